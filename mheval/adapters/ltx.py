"""`ltx`: LTX-2.3 (Lightricks) through diffusers' `LTX2Pipeline` / `LTX2ImageToVideoPipeline`, loaded once per run.

    --models ltx:/models/LTX-2.3-diffusers  [--model-option ltx.transformer=/models/ltx-2.3-22b-distilled.safetensors]
                                            [--model-option ltx.text_encoder=/models/gemma-3-12b-it]
                                            [--model-option ltx.two_stage=true
                                             --model-option ltx.upsampler=/models/ltx-2.3-spatial-upscaler-x2.safetensors]

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
- `text_encoder`: a Gemma 3 directory (model and tokenizer) replacing the pipeline's;
- `upsampler` (two-stage only): the spatial ×2 latent upsampler, the official .safetensors file or a diffusers
  model directory; by default the pipeline directory's `latent_upsampler/`.

Sampling. `schedule=distilled` (the default, for the distilled checkpoint) runs Lightricks' eight distilled sigmas as
they are, as ltx-pipelines does; `schedule=shifted` runs `steps` uniform sigmas through the pipeline scheduler's
resolution-dependent shift (the full model, with `guidance` > 1). `two_stage=true` is ltx-pipelines' two-stage
distilled flow (its `DistilledPipeline`): stage 1 at half the width and height, the latent upsampled ×2 by the
spatial upsampler (loaded once per run), then stage 2 at full size from that latent and stage 1's audio latent,
both re-noised to the first of the three stage-2 distilled sigmas, without guidance, then decoded. One generator
(the item's seed) drives both stages. With a reference image diffusers keeps the upsampled first latent frame clean
in stage 2, where ltx-pipelines re-encodes the image at full size.

Mapping an item onto the pipeline's constraints (each rounding is recorded in the clip's metadata):
- width and height: the nearest multiples of 32 (at least 32), of 64 with two stages so that stage 1's half size
  is still a multiple of 32;
- frames: seconds × frame_rate rounded to the nearest k·r + 1, r being the VAE's temporal compression (8 for
  LTX-2), at least r + 1;
- a reference image → image-to-video (the same components, `LTX2ImageToVideoPipeline.from_pipe`);
- video and the generated audio (the vocoder's rate and channels) are written as they come.

Timings per clip: `text_encoding` (the prompt, encoded once), then one stage: `base` (call start to the last
denoising step) and `decode` (to the decoded video and audio); two stages: `stage1`, `upsample`, `stage2`, `decode`.
The clip's metadata also records each stage's size and the sigmas its scheduler ran.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from mheval.adapters import Adapter, GenerationError, register
from mheval.media import write_mp4
from mheval.metrics import WeightFile
from mheval.suites import SuiteItem

SIZE_MULTIPLE = 32
UPSAMPLE_FACTOR = 2                  # the spatial upsampler: stage 1 runs at half the width and height
UPSAMPLER_FOLDER = "latent_upsampler"  # where a diffusers LTX-2 pipeline directory keeps it
EXTRA = "ltx"
WEIGHT_SUFFIXES = (".safetensors", ".bin")
# ltx-core's LatentUpsampler configuration defaults, under diffusers' names (the official file's metadata may omit
# any of them; diffusers' own defaults differ for mid_channels and the resampler)
OFFICIAL_UPSAMPLER_DEFAULTS = {"in_channels": 128, "mid_channels": 512, "num_blocks_per_stage": 4, "dims": 3,
                               "spatial_upsample": True, "temporal_upsample": False, "rational_spatial_scale": 2.0,
                               "use_rational_resampler": False}
OFFICIAL_UPSAMPLER_NAMES = {"spatial_scale": "rational_spatial_scale", "rational_resampler": "use_rational_resampler"}


@dataclass(frozen=True)
class LtxOptions:
    pipeline: str = field(default="", metadata={"help": "diffusers LTX-2.3 pipeline directory (same as ltx:PATH)"})
    transformer: str = field(default="", metadata={
        "help": "distilled transformer: official .safetensors file or diffusers model directory; empty: the "
                "pipeline's"})
    text_encoder: str = field(default="", metadata={"help": "Gemma 3 directory; empty: the pipeline's"})
    two_stage: bool = field(default=False, metadata={
        "help": "ltx-pipelines' two-stage distilled flow: stage 1 at half size, the latent upsampled x2, stage 2 "
                "(3 distilled steps) at full size"})
    upsampler: str = field(default="", metadata={
        "help": "spatial x2 upsampler for two_stage: official .safetensors file or diffusers model directory; "
                "empty: PIPELINE/latent_upsampler"})
    schedule: str = field(default="distilled", metadata={
        "help": "stage 1 sigmas: distilled = Lightricks' 8 distilled values as they are (steps must be 8); shifted "
                "= `steps` uniform sigmas with the scheduler's resolution shift (the full model)",
        "choices": ("distilled", "shifted")})
    steps: int = field(default=8, metadata={"help": "denoising steps of stage 1 (8: the distilled schedule)"})
    guidance: float = field(default=1.0, metadata={"help": "CFG scale (1: none, as the distilled model runs)"})
    seed: int | None = field(default=None, metadata={
        "help": "seed for every item of this model, overriding the run's --seed (part of the cache key)"})
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


def load_upsampler(path: Path, dtype):
    """The spatial ×2 latent upsampler from a diffusers model directory or the official single .safetensors file.

    diffusers 0.42.1 has no single-file loader for it; the official file holds diffusers' parameter names unchanged
    (its conversion script loads it as is) and its configuration, in ltx-core's names, in the safetensors metadata."""
    from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel

    if path.is_dir():
        model = LTX2LatentUpsamplerModel.from_pretrained(path, dtype=dtype)
    else:
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if "config" not in metadata:
            raise ValueError(f"{path}: no model configuration in its safetensors metadata; not an official LTX-2 "
                             f"spatial upsampler file (or pass a diffusers model directory)")
        config = dict(OFFICIAL_UPSAMPLER_DEFAULTS)
        for key, value in json.loads(metadata["config"]).items():   # other keys do not shape the model
            name = OFFICIAL_UPSAMPLER_NAMES.get(key, key)
            if name in config:
                config[name] = value
        model = LTX2LatentUpsamplerModel(**config)   # a mismatch with the weights fails the strict load below
        model.load_state_dict(load_file(str(path)), strict=True)
        model = model.to(dtype).eval()
    c = model.config
    if not c.spatial_upsample or c.temporal_upsample or (c.use_rational_resampler and c.rational_spatial_scale != 2):
        raise ValueError(f"{path}: the two-stage flow needs a spatial x{UPSAMPLE_FACTOR} upsampler; this one is "
                         f"spatial={c.spatial_upsample}, temporal={c.temporal_upsample}, "
                         f"scale={c.rational_spatial_scale if c.use_rational_resampler else 2}")
    return model


@register
class LtxAdapter(Adapter):
    name = "ltx"
    description = "LTX-2.3 in-process through diffusers' LTX2Pipeline (ltx:PIPELINE_DIR); text/image-to-video+audio"
    options_class = LtxOptions

    def __init__(self, arg: str | None = None, **options: Any):
        super().__init__(arg, **options)
        try:
            from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES
        except ImportError:
            raise ValueError(f"the ltx adapter needs diffusers: pip install 'mheval[{EXTRA}]'") from None
        o = self.options
        directory = o.pipeline or arg
        if not directory:
            raise ValueError("the ltx adapter needs a diffusers LTX-2.3 pipeline directory: --models ltx:/path")
        self.directory = Path(directory).expanduser().resolve()
        if not (self.directory / "model_index.json").is_file():
            raise ValueError(f"{self.directory} is not a diffusers pipeline directory (no model_index.json)")
        for option in ("transformer", "text_encoder", "upsampler"):
            path = getattr(o, option)
            if path and not Path(path).expanduser().exists():
                raise ValueError(f"ltx.{option}: {path} does not exist")
        if o.schedule == "distilled" and o.steps != len(DISTILLED_SIGMA_VALUES):
            raise ValueError(f"ltx.steps={o.steps}: the distilled schedule has {len(DISTILLED_SIGMA_VALUES)} steps; "
                             f"other step counts need ltx.schedule=shifted")
        if o.upsampler and not o.two_stage:
            raise ValueError("ltx.upsampler is used only by the two-stage flow: add ltx.two_stage=true")
        self.upsampler_path = Path(o.upsampler).expanduser().resolve() if o.upsampler \
            else self.directory / UPSAMPLER_FOLDER
        if o.two_stage and not self.upsampler_path.exists():
            raise ValueError(f"ltx.two_stage needs the spatial x{UPSAMPLE_FACTOR} upsampler: pass ltx.upsampler=PATH "
                             f"(the official ltx-2.3-spatial-upscaler-x2 .safetensors or a diffusers model directory) "
                             f"or put it in {self.upsampler_path}")

    def config(self) -> dict[str, Any]:
        config = super().config()
        for local in ("pipeline", "transformer", "text_encoder", "upsampler", "device"):   # where: weights() pins it
            config.pop(local)
        return {**config, "arg": None, "backend": "diffusers", "weights_sha256": [w.sha256 for w in self.weights()]}

    @cached_property
    def _weights(self) -> list[WeightFile]:
        o = self.options
        roots = [self.directory] + [Path(p).expanduser() for p in (o.transformer, o.text_encoder) if p]
        if o.two_stage and not self.upsampler_path.is_relative_to(self.directory):   # else hashed with the directory
            roots.append(self.upsampler_path)
        files = []
        for root in roots:
            files += [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
        return [WeightFile.of(path) for path in files]

    def weights(self) -> list[WeightFile]:
        return self._weights

    @cached_property
    def device(self) -> str:
        import torch

        return self.options.device or ("cuda" if torch.cuda.is_available() else "cpu")

    @cached_property
    def dtype(self):
        import torch

        return getattr(torch, self.options.dtype)

    @cached_property
    def pipeline(self):
        from diffusers import LTX2Pipeline, LTX2VideoTransformer3DModel

        components = {}
        if self.options.transformer:
            path = Path(self.options.transformer).expanduser()
            components["transformer"] = (LTX2VideoTransformer3DModel.from_single_file(str(path), dtype=self.dtype)
                                         if path.is_file() else
                                         LTX2VideoTransformer3DModel.from_pretrained(path, dtype=self.dtype))
        if self.options.text_encoder:
            from transformers import AutoTokenizer, Gemma3ForConditionalGeneration

            path = Path(self.options.text_encoder).expanduser()
            components["text_encoder"] = Gemma3ForConditionalGeneration.from_pretrained(path, dtype=self.dtype)
            components["tokenizer"] = AutoTokenizer.from_pretrained(path)
        return LTX2Pipeline.from_pretrained(self.directory, dtype=self.dtype, **components).to(self.device)

    @cached_property
    def unshifted_scheduler(self):
        """The pipeline's scheduler running the sigmas it is given unchanged (no resolution shift, no terminal
        stretch), as ltx-pipelines runs its distilled values."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler.from_config(self.pipeline.scheduler.config, use_dynamic_shifting=False,
                                                           shift_terminal=None, shift=1.0)

    @cached_property
    def _variants(self) -> dict[tuple[bool, bool], Any]:
        return {(False, False): self.pipeline}

    def pipeline_for(self, image: bool, unshifted: bool):
        """The T2V or I2V pipeline over the loaded components, with the pipeline's or the unshifted scheduler."""
        if (image, unshifted) not in self._variants:
            from diffusers import LTX2ImageToVideoPipeline, LTX2Pipeline

            kind = LTX2ImageToVideoPipeline if image else LTX2Pipeline
            scheduler = {"scheduler": self.unshifted_scheduler} if unshifted else {}
            # from_pipe casts every shared component to its dtype argument, float32 when omitted: pass the run's
            self._variants[image, unshifted] = kind.from_pipe(self.pipeline, dtype=self.dtype, **scheduler)
        return self._variants[image, unshifted]

    @cached_property
    def upsample_pipeline(self):
        from diffusers import LTX2LatentUpsamplePipeline

        upsampler = load_upsampler(self.upsampler_path, self.dtype)
        return LTX2LatentUpsamplePipeline(vae=self.pipeline.vae, latent_upsampler=upsampler).to(self.device)

    def plan(self, item: SuiteItem) -> dict[str, Any]:
        """The pipeline's size and frame count for an item, with what was asked."""
        ratio = self.pipeline.vae_temporal_compression_ratio
        frames = frame_count(item.seconds, self.options.frame_rate, ratio)
        multiple = SIZE_MULTIPLE * (UPSAMPLE_FACTOR if self.options.two_stage else 1)
        return {"width": round_to_multiple(item.width, multiple), "height": round_to_multiple(item.height, multiple),
                "frames": frames,
                "requested": {"width": item.width, "height": item.height, "seconds": item.seconds,
                              "frames": item.seconds * self.options.frame_rate},
                "seconds": frames / self.options.frame_rate, "temporal_ratio": ratio}

    @staticmethod
    def _guidance_arguments(guidance: float) -> dict[str, Any]:
        if guidance > 1.0:
            return {"guidance_scale": guidance}
        # the distilled model runs without any guidance pass
        return dict(guidance_scale=1.0, stg_scale=0.0, modality_scale=1.0, guidance_rescale=0.0,
                    audio_guidance_scale=1.0, audio_stg_scale=0.0, audio_modality_scale=1.0,
                    audio_guidance_rescale=0.0, spatio_temporal_guidance_blocks=None)

    @staticmethod
    def _timed_call(pipeline, arguments: dict[str, Any]) -> tuple[Any, float, float, list[float]]:
        """One pipeline call: its output, seconds to the end of its last denoising step, seconds after that, and the
        sigmas its scheduler ran (with the terminal 0)."""
        step_ends: list[float] = []

        def on_step_end(pipe, step, timestep, tensors):
            step_ends.append(time.perf_counter())
            return tensors

        started = time.perf_counter()
        result = pipeline(**arguments, callback_on_step_end=on_step_end)
        ended = time.perf_counter()
        last_step = step_ends[-1] if step_ends else ended
        sigmas = [round(float(sigma), 6) for sigma in pipeline.scheduler.sigmas]
        return result, last_step - started, ended - last_step, sigmas

    def generate(self, item: SuiteItem, output: Path, seed: int) -> dict[str, Any]:
        import torch
        from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES
        from PIL import Image

        o = self.options
        item_seed = seed if o.seed is None else o.seed
        plan = self.plan(item)
        width, height = plan["width"], plan["height"]
        image = Image.open(item.reference_image).convert("RGB") if item.reference_image else None
        generator = torch.Generator(device="cpu").manual_seed(item_seed)   # one generator through both stages

        started = time.perf_counter()
        prompt_embeds, prompt_mask, negative_embeds, negative_mask = self.pipeline.encode_prompt(
            item.prompt, o.negative_prompt, do_classifier_free_guidance=o.guidance > 1.0,
            max_sequence_length=o.max_sequence_length, device=self.device)
        timings = {"text_encoding": time.perf_counter() - started}
        common = dict(prompt_embeds=prompt_embeds, prompt_attention_mask=prompt_mask, num_frames=plan["frames"],
                      frame_rate=o.frame_rate, generator=generator, **({"image": image} if image else {}))
        stage1 = dict(common, **self._guidance_arguments(o.guidance), negative_prompt_embeds=negative_embeds,
                      negative_prompt_attention_mask=negative_mask)
        if o.schedule == "distilled":
            stage1.update(sigmas=DISTILLED_SIGMA_VALUES, num_inference_steps=len(DISTILLED_SIGMA_VALUES))
        else:
            stage1.update(num_inference_steps=o.steps)
        stage1_pipeline = self.pipeline_for(image is not None, unshifted=o.schedule == "distilled")

        if not o.two_stage:
            result, timings["base"], timings["decode"], sigmas = self._timed_call(
                stage1_pipeline, dict(stage1, width=width, height=height, output_type="np"))
            stages = {"base": {"size": [width, height], "sigmas": sigmas}}
        else:
            half = [width // UPSAMPLE_FACTOR, height // UPSAMPLE_FACTOR]
            low, steps_seconds, after_seconds, sigmas1 = self._timed_call(   # video and audio latents, unnormalised
                stage1_pipeline, dict(stage1, width=half[0], height=half[1], output_type="latent"))
            timings["stage1"] = steps_seconds + after_seconds
            upsample_started = time.perf_counter()
            video_latent = self.upsample_pipeline(latents=low.frames, width=half[0], height=half[1],
                                                  num_frames=plan["frames"], output_type="latent",
                                                  return_dict=False)[0]       # [B, C, F', H'·2, W'·2], unnormalised
            timings["upsample"] = time.perf_counter() - upsample_started
            stage2 = dict(common, **self._guidance_arguments(1.0), width=width, height=height, latents=video_latent,
                          audio_latents=low.audio, sigmas=STAGE_2_DISTILLED_SIGMA_VALUES,
                          num_inference_steps=len(STAGE_2_DISTILLED_SIGMA_VALUES),
                          noise_scale=STAGE_2_DISTILLED_SIGMA_VALUES[0], output_type="np")
            result, timings["stage2"], timings["decode"], sigmas2 = self._timed_call(
                self.pipeline_for(image is not None, unshifted=True), stage2)
            stages = {"stage1": {"size": half, "sigmas": sigmas1},
                      "upsample": {"latent_size": [int(video_latent.shape[-1]), int(video_latent.shape[-2])]},
                      "stage2": {"size": [width, height], "sigmas": sigmas2,
                                 "noise_scale": STAGE_2_DISTILLED_SIGMA_VALUES[0]}}

        decoded = time.perf_counter()
        video = np.asarray(result.frames[0])                    # [F, H, W, 3] in [0, 1]
        audio = result.audio[0].float().cpu().numpy().T         # [N, C]
        if not (np.isfinite(video).all() and np.isfinite(audio).all()):
            raise GenerationError("the pipeline returned NaN or infinite video or audio (a numerical overflow or a "
                                  "degenerate sigma schedule); no clip written")
        frames = (np.clip(video, 0.0, 1.0) * 255).round().astype(np.uint8)
        sample_rate = int(self.pipeline.vocoder.config.output_sampling_rate)
        write_mp4(output, frames, o.frame_rate, audio, sample_rate)
        timings["write"] = time.perf_counter() - decoded
        return {
            "timings": timings, "mode": "I2V" if image else "T2V", "backend": "diffusers",
            "two_stage": o.two_stage, "schedule": o.schedule, "stages": stages,
            "seed": item_seed, "run_seed": seed,
            "size": [width, height], "frames": plan["frames"], "seconds": plan["seconds"],
            "requested": plan["requested"], "rounded": plan["requested"]["width"] != width
            or plan["requested"]["height"] != height or plan["frames"] != plan["requested"]["frames"],
            "frame_rate": o.frame_rate, "sample_rate": sample_rate, "audio_channels": int(audio.shape[0]),
            "steps": o.steps, "guidance": o.guidance,
        }
