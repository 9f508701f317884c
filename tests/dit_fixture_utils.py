"""Shared loading of the DiT parity fixtures (tests/fixtures/parity/dit_*), driven by their sidecars."""
from __future__ import annotations

import re

import torch
from parity_fixture import load_fixture, rel_err  # noqa: F401  (re-exported for the DiT tests)

from model.checkpoint import fixture_state_dict, load_fixture_params
from model.dit import DiTConfig, DiTModel
from model.packing import PackedSequence, pack

DIT_FIXTURES = ("dit_tiny", "dit_tiny_local_attn")


def weight_tensors(name: str) -> dict[str, torch.Tensor]:
    """The fixture's own param.* tensors, or those of the fixture its sidecar's "weights" note points to."""
    sidecar, tensors = load_fixture(name)
    if fixture_state_dict(tensors):
        return tensors
    source = re.search(r"(\w+)\.safetensors", sidecar["weights"]).group(1)
    return load_fixture(source)[1]


def pack_fixture_inputs(tensors, sidecar, coords_style: str | None = None, drop_text_tokens: int = 0) -> PackedSequence:
    proxy = sidecar["data_proxy"]
    return pack(
        tensors["input.latent_video"],
        tensors["input.latent_audio"],
        tensors["input.text_embeds_padded"],
        int(tensors["input.text_len"]) - drop_text_tokens,
        coords_style=coords_style or proxy["coords_style"],
        patch_size=proxy["patch_size"],
        t_patch_size=proxy["t_patch_size"],
        frame_receptive_field=proxy["frame_receptive_field"],
    )


def build_fixture_model(name: str, tmp_dir, compute_dtype=torch.float32) -> DiTModel:
    """The fixture's DiT with its weights loaded through the checkpoint loader."""
    sidecar, _ = load_fixture(name)
    model = DiTModel(DiTConfig.from_dict(sidecar["model_config"], compute_dtype=compute_dtype)).eval()
    load_fixture_params(model, weight_tensors(name), tmp_dir)
    return model
