"""`magihuman`: the bundled daVinci-MagiHuman generator (model/pipeline.py), run in-process.

Options (`--model-option LABEL.KEY=VALUE`, declared in `MagiHumanOptions`; `magihuman:DIR` is the same as
checkpoints=DIR): checkpoints, preset, device, offload, decoder, sr_size, weights_seed, hold_audio. Without
checkpoints the adapter runs `magihuman-tiny-random`: the whole stack with tiny random weights. Its clips have the
right length, frame rate, resolution and audio track, but their content is noise; tables mark the model "tiny
random weights".

The item's resolution is the base resolution (rounded down to multiples of 32), as the examples' 448x256; SR
presets then output `sr_size`. Clip length is the item's seconds rounded up to a whole second (the original takes
whole seconds), giving 25s+1 audio latents and 4⌊25s/4⌋+1 frames at 25 fps. An item with `reference_audio` is
generated audio-conditioned (a2v): the speech is cut to those seconds, the clip follows its length, and the clip's
audio track is that speech through the audio VAE (the same speech for every a2v generator: a lip-sync benchmark).

The checkpoint layout (base/, distill/, 540p_sr/, 1080p_sr/, turbo_vae/, t5gemma-9b-9b-ul2/,
stable-audio-open-1.0/, Wan2.2-TI2V-5B/Wan2.2_VAE.pth) is spelled out in `model.pipeline.CHECKPOINT_LAYOUT`;
`python -m model layout` prints it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mheval.adapters import Adapter, GenerationError, register
from mheval.media import MediaError
from mheval.metrics import WeightFile
from mheval.resources import Resources
from mheval.suites import SuiteItem

RANDOM_NOTICE = "tiny random weights"

# pipeline stage → the timing keys of the speed metric (the paper's stage names); others keep a snake_case name
TIMING_KEYS = {"audio encoding": "audio_encoding", "text encoding": "text_encoding",
               "image encoding": "image_encoding", "base denoising": "base", "super-resolution": "sr",
               "video decode": "decode", "audio decode": "audio_decode", "write mp4": "write"}
DECODERS = ("turbo", "wan")
SIZE = re.compile(r"(\d+)x(\d+)")


@dataclass(frozen=True)
class MagiHumanOptions:
    checkpoints: str = field(default="", metadata={
        "help": "checkpoint directory in the published layout (python -m model layout); empty: tiny random weights"})
    preset: str = field(default="distill", metadata={
        "help": "base | distill | sr_540p | sr_1080p (the original's four example configurations)"})
    device: str = field(default="", metadata={"help": "cpu or cuda; empty: cuda when available"})
    offload: bool = field(default=False, metadata={
        "help": "keep networks on the CPU between stages (GPUs with little memory)"})
    decoder: str = field(default="turbo", metadata={"help": "video decoder: turbo (Turbo-VAED) or wan (Wan2.2)",
                                                     "choices": DECODERS})
    sr_size: str = field(default="", metadata={
        "help": "SR presets: output WIDTHxHEIGHT; empty: the preset's (896x512 or 1920x1088)"})
    weights_seed: int = field(default=0, metadata={"help": "seed of the tiny random weights"})
    hold_audio: bool = field(default=False, metadata={
        "help": "a2v items with the distill preset: keep the reference audio fixed during the steps (the original "
                "still updates it, which looks like a bug; default: as the original)"})


@register
class MagiHumanAdapter(Adapter):
    name = "magihuman"
    description = ("daVinci-MagiHuman in-process (options: checkpoints=DIR, preset=base|distill|sr_540p|sr_1080p, "
                   "device, offload, decoder, sr_size, hold_audio); without checkpoints: magihuman-tiny-random, "
                   "random weights; items with reference_audio are audio-conditioned (a2v)")
    options_class = MagiHumanOptions

    def __init__(self, arg: str | None = None, **options: str):
        super().__init__(arg, **options)
        from model.pipeline import resolve_preset

        self.checkpoints = self.options.checkpoints or arg
        self.preset = resolve_preset(self.options.preset)
        if self.options.sr_size and not SIZE.fullmatch(self.options.sr_size):
            raise ValueError(f"sr_size must be WIDTHxHEIGHT, e.g. 896x512, got {self.options.sr_size!r}")
        self.notice = None if self.checkpoints else RANDOM_NOTICE

    @property
    def model_label(self) -> str:
        from model.pipeline import MODEL_LABEL, TINY_RANDOM_LABEL

        return MODEL_LABEL if self.checkpoints else TINY_RANDOM_LABEL

    def config(self) -> dict[str, Any]:
        """The options, the model and preset, and for the tiny random stack its configuration's fingerprint (its
        clips change when it does)."""
        from model.pipeline import tiny_stack_fingerprint

        config = {**super().config(), "model": self.model_label, "preset": self.preset.name}
        return config if self.checkpoints else {**config, "tiny_stack": tiny_stack_fingerprint()[:16]}

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

        common = {"preset": self.preset.name, "device": self.options.device or None, "offload": self.options.offload,
                  "decoder": self.options.decoder}
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
        try:
            result = self.pipeline.generate(item.prompt, image=item.reference_image, seconds=seconds,
                                            width=item.width, height=item.height, seed=seed, sr_size=self._sr_size(),
                                            out=output, audio=item.reference_audio,
                                            hold_audio=self.options.hold_audio)
        except MediaError as err:   # an unreadable reference audio file: this item fails, the run goes on
            raise GenerationError(f"reference audio: {err}") from err
        frames, height, width, _ = result.frames.shape
        mode = "TI2V" if item.reference_image else "T2V"
        return {
            "timings": {TIMING_KEYS.get(stage, stage.replace(" ", "_")): t for stage, t in result.timings.items()},
            "model": result.label,
            "random_weights": self.checkpoints is None,
            "preset": result.preset,
            "mode": mode + "+a2v" if item.reference_audio else mode,
            "seconds": seconds,
            "frames": frames,
            "width": width,
            "height": height,
            "audio_samples": len(result.audio),
            "sample_rate": result.sample_rate,
        }

    def _sr_size(self) -> tuple[int, int] | None:
        match = SIZE.fullmatch(self.options.sr_size)
        return (int(match[1]), int(match[2])) if match else None
