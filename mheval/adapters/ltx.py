"""`ltx`: LTX-2.3 (Lightricks) through diffusers' `LTX2Pipeline` / `LTX2ImageToVideoPipeline`, loaded once per run.

    --models ltx:/models/LTX-2.3-diffusers  [--model-option ltx.transformer=/models/ltx-2.3-22b-distilled.safetensors]
                                            [--model-option ltx.text_encoder=/models/gemma-3-12b-it]

Backend choice (evidence in the README): diffusers 0.42.1 implements LTX-2.0/2.3 (its docstrings give the 2.3
guidance values; it single-file-loads the official transformer and VAE checkpoints), installs from PyPI beside
torch 2.14.1 with no pin conflict, and builds every component from classes whose tiny configurations run on a CPU,
which is how this adapter is tested. Lightricks' ltx-core / ltx-pipelines 1.0.0 also import beside torch 2.14.1
(with torchaudio 2.11.0), but their pipelines take checkpoint file paths and hard-wire the full-size model
configuration read from the checkpoint, so no tiny random instance could exercise them here.

Paths (all local; mheval never downloads):
- the argument: a diffusers LTX-2.3 pipeline directory (model_index.json and its component folders);
- `transformer`: replaces the pipeline's transformer, e.g. the distilled checkpoint, either a single .safetensors
  file in the official layout (loaded with `from_single_file`) or a diffusers model directory;
- `text_encoder`: a Gemma 3 directory (model and tokenizer) replacing the pipeline's.

Mapping an item onto the pipeline's constraints (each rounding is recorded in the clip's metadata):
- width and height: the nearest multiples of 32 (at least 32);
- frames: seconds × frame_rate rounded to the nearest k·r + 1, r being the VAE's temporal compression (8 for
  LTX-2), at least r + 1;
- a reference image → image-to-video (the same components, `LTX2ImageToVideoPipeline.from_pipe`);
- video and the generated audio (the vocoder's rate and channels) are written as they come.

Timings per clip: `text_encoding` (call start to the first denoising step, from the step callback), `base` (the
denoising loop) and `decode` (last step to the decoded video and audio).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from mheval.adapters import Adapter, register
from mheval.media import write_mp4
from mheval.metrics import WeightFile, sha256_file
from mheval.suites import SuiteItem

SIZE_MULTIPLE = 32
EXTRA = "ltx"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class LtxOptions:
    pipeline: str = field(default="", metadata={"help": "diffusers LTX-2.3 pipeline directory (same as ltx:PATH)"})
    transformer: str = field(default="", metadata={
        "help": "distilled transformer: official .safetensors file or diffusers model directory; empty: the "
                "pipeline's"})
    text_encoder: str = field(default="", metadata={"help": "Gemma 3 directory; empty: the pipeline's"})
    steps: int = field(default=8, metadata={"help": "denoising steps (the distilled model's 8)"})
    guidance: float = field(default=1.0, metadata={"help": "CFG scale (1: none, as the distilled model runs)"})
    frame_rate: float = field(default=24.0, metadata={"help": "frames per second generated and written"})
    negative_prompt: str = field(default="", metadata={"help": "negative prompt (used only with guidance > 1)"})
    dtype: str = field(default="bfloat16", metadata={"help": "compute dtype (float32 on a CPU)",
                                                     "choices": ("bfloat16", "float16", "float32")})
    device: str = field(default="", metadata={"help": "torch device; empty: cuda when available, else cpu"})
    max_sequence_length: int = field(default=1024, metadata={"help": "prompt tokens given to the text encoder"})


def round_to_multiple(value: int, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def frame_count(seconds: float, frame_rate: float, temporal_ratio: int) -> int:
    """The k·r + 1 frame count nearest seconds × frame_rate (at least r + 1)."""
    return max(1, int(round((seconds * frame_rate - 1) / temporal_ratio))) * temporal_ratio + 1


@register
class LtxAdapter(Adapter):
    name = "ltx"
    description = "LTX-2.3 in-process through diffusers' LTX2Pipeline (ltx:PIPELINE_DIR); text/image-to-video+audio"
    options_class = LtxOptions

    def __init__(self, arg: str | None = None, **options: Any):
        super().__init__(arg, **options)
        try:
            import diffusers  # noqa: F401
        except ImportError:
            raise ValueError(f"the ltx adapter needs diffusers: pip install 'mheval[{EXTRA}]'") from None
        directory = self.options.pipeline or arg
        if not directory:
            raise ValueError("the ltx adapter needs a diffusers LTX-2.3 pipeline directory: --models ltx:/path")
        self.directory = Path(directory).expanduser().resolve()
        if not (self.directory / "model_index.json").is_file():
            raise ValueError(f"{self.directory} is not a diffusers pipeline directory (no model_index.json)")
        for option in ("transformer", "text_encoder"):
            path = getattr(self.options, option)
            if path and not Path(path).expanduser().exists():
                raise ValueError(f"ltx.{option}: {path} does not exist")

    def config(self) -> dict[str, Any]:
        config = super().config()
        for local in ("pipeline", "transformer", "text_encoder", "device"):   # where, not what: weights() pins it
            config.pop(local)
        return {**config, "arg": None, "backend": "diffusers", "weights_sha256": [w.sha256 for w in self.weights()]}

    @cached_property
    def _weights(self) -> list[WeightFile]:
        roots = [self.directory] + [Path(p).expanduser() for p in (self.options.transformer, self.options.text_encoder)
                                    if p]
        files = []
        for root in roots:
            files += [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
        return [WeightFile(str(path), sha256_file(path)) for path in files]

    def weights(self) -> list[WeightFile]:
        return self._weights

    @cached_property
    def device(self) -> str:
        import torch

        return self.options.device or ("cuda" if torch.cuda.is_available() else "cpu")

    @cached_property
    def pipeline(self):
        import torch
        from diffusers import LTX2Pipeline, LTX2VideoTransformer3DModel

        dtype = getattr(torch, self.options.dtype)
        components = {}
        if self.options.transformer:
            path = Path(self.options.transformer).expanduser()
            components["transformer"] = (LTX2VideoTransformer3DModel.from_single_file(str(path), dtype=dtype)
                                         if path.is_file() else
                                         LTX2VideoTransformer3DModel.from_pretrained(path, dtype=dtype))
        if self.options.text_encoder:
            from transformers import AutoTokenizer, Gemma3ForConditionalGeneration

            path = Path(self.options.text_encoder).expanduser()
            components["text_encoder"] = Gemma3ForConditionalGeneration.from_pretrained(path, dtype=dtype)
            components["tokenizer"] = AutoTokenizer.from_pretrained(path)
        return LTX2Pipeline.from_pretrained(self.directory, dtype=dtype, **components).to(self.device)

    @cached_property
    def image_pipeline(self):
        from diffusers import LTX2ImageToVideoPipeline

        return LTX2ImageToVideoPipeline.from_pipe(self.pipeline)

    def plan(self, item: SuiteItem) -> dict[str, Any]:
        """The pipeline's size and frame count for an item, with what was asked."""
        ratio = self.pipeline.vae_temporal_compression_ratio
        frames = frame_count(item.seconds, self.options.frame_rate, ratio)
        return {"width": round_to_multiple(item.width, SIZE_MULTIPLE),
                "height": round_to_multiple(item.height, SIZE_MULTIPLE), "frames": frames,
                "requested": {"width": item.width, "height": item.height, "seconds": item.seconds,
                              "frames": item.seconds * self.options.frame_rate},
                "seconds": frames / self.options.frame_rate, "temporal_ratio": ratio}

    def generate(self, item: SuiteItem, output: Path, seed: int) -> dict[str, Any]:
        import torch
        from PIL import Image

        o = self.options
        started = time.perf_counter()
        plan = self.plan(item)
        step_ends: list[float] = []

        def on_step_end(pipeline, step, timestep, tensors):
            step_ends.append(time.perf_counter())
            return tensors

        arguments = dict(prompt=item.prompt, negative_prompt=o.negative_prompt, height=plan["height"],
                         width=plan["width"], num_frames=plan["frames"], frame_rate=o.frame_rate,
                         num_inference_steps=o.steps, guidance_scale=o.guidance, max_sequence_length=o.max_sequence_length,
                         generator=torch.Generator(device="cpu").manual_seed(seed), output_type="np",
                         callback_on_step_end=on_step_end)
        if o.guidance <= 1.0:   # the distilled model runs without any guidance pass
            arguments.update(stg_scale=0.0, modality_scale=1.0, guidance_rescale=0.0, audio_guidance_scale=1.0,
                             audio_stg_scale=0.0, audio_modality_scale=1.0, audio_guidance_rescale=0.0,
                             spatio_temporal_guidance_blocks=None)
        if item.reference_image:
            result = self.image_pipeline(image=Image.open(item.reference_image).convert("RGB"), **arguments)
        else:
            result = self.pipeline(**arguments)
        decoded = time.perf_counter()
        frames = (np.clip(np.asarray(result.frames[0]), 0.0, 1.0) * 255).round().astype(np.uint8)   # [F, H, W, 3]
        audio = result.audio[0].float().cpu().numpy()                                                # [C, N]
        sample_rate = int(self.pipeline.vocoder.config.output_sampling_rate)
        write_mp4(output, frames, o.frame_rate, audio, sample_rate)
        # the step callback fires at the end of each step: the first step began one mean step time earlier
        step_time = (step_ends[-1] - step_ends[0]) / max(1, len(step_ends) - 1) if step_ends else 0.0
        denoise_start = step_ends[0] - step_time if step_ends else decoded
        denoise_end = step_ends[-1] if step_ends else decoded
        return {
            "timings": {"text_encoding": denoise_start - started, "base": denoise_end - denoise_start,
                        "decode": decoded - denoise_end, "write": time.perf_counter() - decoded},
            "mode": "I2V" if item.reference_image else "T2V", "backend": "diffusers",
            "size": [plan["width"], plan["height"]], "frames": plan["frames"], "seconds": plan["seconds"],
            "requested": plan["requested"], "rounded": plan["requested"]["width"] != plan["width"]
            or plan["requested"]["height"] != plan["height"] or plan["frames"] != plan["requested"]["frames"],
            "frame_rate": o.frame_rate, "sample_rate": sample_rate, "audio_channels": int(audio.shape[0]),
            "steps": o.steps, "guidance": o.guidance,
        }
