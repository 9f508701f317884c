"""A randomly initialised tiny open_clip model (TINY RANDOM WEIGHTS, for the CLIP metrics' plumbing only: its
scores mean nothing), registered with open_clip under the name the caller picks."""
import json
from pathlib import Path

import open_clip
import torch

TINY_CLIP_CONFIG = {"embed_dim": 32,
                    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
                    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}


def save_tiny_clip(name: str, directory: Path, checkpoint: Path) -> Path:
    """Register `name` with open_clip (its config written into `directory`) and save seed-0 random weights of it
    to `checkpoint`."""
    (directory / f"{name}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(directory)
    torch.manual_seed(0)
    torch.save(open_clip.create_model(name).state_dict(), checkpoint)
    return checkpoint
