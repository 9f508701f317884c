"""`magihuman`: the bundled daVinci-MagiHuman generator (model/pipeline.py), run in-process.

Options (`--model-option LABEL.KEY=VALUE`; `magihuman:DIR` is the same as checkpoints=DIR):

    checkpoints=DIR   weights in the published layout (below). Without it the adapter runs
                      `magihuman-tiny-random`: the whole stack with tiny random weights. Its clips have the right
                      length, frame rate, resolution and audio track, but their content is noise; tables mark the
                      model "tiny random weights".
    preset=NAME       base | distill | sr_540p | sr_1080p (the original's four example configurations; default distill)
    device=cpu|cuda   default: cuda when available
    offload=true      keep networks on the CPU between stages (GPUs with little memory)
    decoder=turbo|wan video decoder (default turbo; wan is the Wan2.2 decoder)
    sr_size=WxH       SR presets: output size (default: the preset's, 896x512 or 1920x1088)
    weights_seed=N    seed of the tiny random weights (default 0)

The item's resolution is the base resolution (rounded down to multiples of 32), as the examples' 448x256; SR
presets then output `sr_size`. Clip length is the item's seconds rounded up to a whole second (the original takes
whole seconds), giving 25s+1 audio latents and 4⌊25s/4⌋+1 frames at 25 fps.

The checkpoint layout (base/, distill/, 540p_sr/, 1080p_sr/, turbo_vae/, t5gemma-9b-9b-ul2/,
stable-audio-open-1.0/, Wan2.2-TI2V-5B/Wan2.2_VAE.pth) is spelled out in `model.pipeline.CHECKPOINT_LAYOUT`;
`python -m model layout` prints it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mheval.adapters import Adapter, register
from mheval.metrics import WeightFile
from mheval.resources import Resources
from mheval.suites import SuiteItem

RANDOM_NOTICE = "tiny random weights"

# pipeline stage → the timing keys of the speed metric (the paper's stage names); others keep a snake_case name
TIMING_KEYS = {"text encoding": "text_encoding", "image encoding": "image_encoding", "base denoising": "base",
               "super-resolution": "sr", "video decode": "decode", "audio decode": "audio_decode",
               "write mp4": "write"}


@dataclass(frozen=True)
class MagiHumanOptions:
    checkpoints: str = field(default="", metadata={"help": "weights directory (published layout); empty: tiny random"})
    preset: str = field(default="distill", metadata={"help": "base | distill | sr_540p | sr_1080p"})
    device: str = field(default="", metadata={"help": "cpu or cuda; empty: cuda when available"})
    offload: bool = field(default=False, metadata={"help": "keep networks on the CPU between stages"})
    decoder: str = field(default="turbo", metadata={"help": "video decoder: turbo or wan"})
    sr_size: str = field(default="", metadata={"help": "SR presets: output WxH; empty: the preset's"})
    weights_seed: int = field(default=0, metadata={"help": "seed of the tiny random weights"})


@register
class MagiHumanAdapter(Adapter):
    name = "magihuman"
    description = ("daVinci-MagiHuman in-process; without checkpoints: magihuman-tiny-random, random weights")
    options_class = MagiHumanOptions

    def __init__(self, arg: str | None = None, **options: str):
        super().__init__(arg, **options)
        from model.pipeline import resolve_preset

        self.checkpoints = self.options.checkpoints or arg
        self.preset = resolve_preset(self.options.preset)
        self.notice = None if self.checkpoints else RANDOM_NOTICE

    @property
    def model_label(self) -> str:
        from model.pipeline import MODEL_LABEL, TINY_RANDOM_LABEL

        return MODEL_LABEL if self.checkpoints else TINY_RANDOM_LABEL

    def config(self) -> dict[str, Any]:
        return {**super().config(), "model": self.model_label, "preset": self.preset.name}

    @property
    def resources(self) -> Resources:
        """Real weights: a GPU, and host memory to load them through (DiT 15.3 B parameters ≈ 31 GB in bf16, the
        T5Gemma encoder ≈ 18 GB). On the CPU: the cores a local run's torch computes with."""
        device = self.options.device or ("cuda" if self.checkpoints else "cpu")
        if device.startswith("cuda"):
            return Resources(cpus=1, gpus=1, memory_gb=64)
        import torch

        return Resources(cpus=torch.get_num_threads())

    @cached_property
    def pipeline(self):
        from model.pipeline import MagiHumanPipeline

        common = {"preset": self.preset.name, "device": self.options.device or None,
                  "offload": self.options.offload, "decoder": self.options.decoder}
        if self.checkpoints:
            return MagiHumanPipeline.from_checkpoints(self.checkpoints, **common)
        return MagiHumanPipeline.tiny_random(seed=self.options.weights_seed, **common)

    @cached_property
    def _weights(self) -> list[WeightFile]:
        if not self.checkpoints:
            return []
        from model.pipeline import CheckpointPaths

        files = CheckpointPaths.find(self.checkpoints, self.preset).weight_files()
        return [WeightFile.of(path) for path in files]

    def weights(self) -> list[WeightFile]:
        return self._weights

    def generate(self, item: SuiteItem, output: Path, seed: int) -> dict[str, Any]:
        seconds = max(1, math.ceil(item.seconds))
        result = self.pipeline.generate(item.prompt, image=item.reference_image, seconds=seconds, width=item.width,
                                        height=item.height, seed=seed, sr_size=self._sr_size(), out=output)
        frames, height, width, _ = result.frames.shape
        return {
            "timings": {TIMING_KEYS.get(stage, stage.replace(" ", "_")): t for stage, t in result.timings.items()},
            "model": result.label,
            "random_weights": self.checkpoints is None,
            "preset": result.preset,
            "mode": "TI2V" if item.reference_image else "T2V",
            "seconds": seconds,
            "frames": frames,
            "width": width,
            "height": height,
            "audio_samples": len(result.audio),
            "sample_rate": result.sample_rate,
        }

    def _sr_size(self) -> tuple[int, int] | None:
        text = self.options.sr_size
        if not text:
            return None
        width, _, height = text.lower().partition("x")
        return int(width), int(height)
