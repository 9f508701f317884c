"""Guided sampling loops of the daVinci-MagiHuman generator (spec sections 3.2, 3.4, 4.3–4.5, 4.7).

The loops only need a velocity function `velocity_fn(video, audio, text) -> (video_velocity, audio_velocity)`
on unpacked latents ([1,48,T,h,w], [1,Na,64]); `dit_velocity_fn` builds one from a DiT, and tests pass fakes.

* `denoise`: one run of the original's `evaluate_with_latent`: TI2V frame-0 injection, the cond forward, the
  negative-prompt forward and CFG when cfg_number = 2, then the step dispatch
  (distilled: DDIM-style steps for video and audio; otherwise UniPC, audio only outside SR and outside a2v).
* `sample_base`, `super_resolve`: the two stages of `evaluate`, with the original's random draw order.
* `generate_latents`: both stages, timed, as the pipeline runs them.

Every random draw comes from the one `generator`, in the original order: initial audio (a2v: the audio encoder's
posterior sample instead), initial video; per distilled step video then audio noise; at SR the video re-noise
then the audio noise.
"""

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch

from model.dit import DiTModel
from model.packing import inject_reference_image, pack, unpack
from model.scheduler import (DEFAULT_SHIFT, SR_AUDIO_NOISE_SCALE, SR_NOISE_VALUE, FlowUniPCScheduler, ddim_step,
                             renoise_for_sr, sr_audio_input, upsample_video_latent)
from model.shapes import LatentShape
from model.text_encoder import TextEmbedding

VelocityFn = Callable[[torch.Tensor, torch.Tensor, TextEmbedding], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class GuidanceConfig:
    """CFG scales (EvaluationConfig defaults); guidance is prompt vs. negative prompt."""

    video_scale: float = 5.0            # video_txt_guidance_scale, while t > late_timestep
    late_video_scale: float = 2.0       # hard-coded in the original, once t <= late_timestep
    late_timestep: int = 500
    audio_scale: float = 5.0            # audio_txt_guidance_scale
    sr_video_scale: float = 3.5         # sr_video_txt_guidance_scale
    sr_early_frames: int = 13           # cfg_trick_start_frame: latent frames [0, 13) use the early scale
    sr_early_video_scale: float = 2.0   # cfg_trick_value, capped at sr_video_scale


@dataclass(frozen=True)
class SamplerConfig:
    num_steps: int = 32                 # br_num_inference_steps
    cfg_number: int = 2                 # 2: CFG + UniPC (base model); 1: no CFG, DDIM-style steps (distilled)
    sr_num_steps: int = 5
    sr_cfg_number: int = 1              # the shipped SR examples use 1; the config default is 2
    shift: float = DEFAULT_SHIFT
    sr_noise_value: int = SR_NOISE_VALUE
    sr_audio_noise_scale: float = SR_AUDIO_NOISE_SCALE
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    # a2v with DDIM-style (distilled) steps: the original still steps the encoded audio like generated audio
    # (spec 4.3 calls it a likely bug; reproduced by default). False holds it fixed, as the UniPC path always does.
    distill_steps_a2v_audio: bool = True


BASE_SAMPLER = SamplerConfig()
DISTILL_SAMPLER = SamplerConfig(num_steps=8, cfg_number=1)


@dataclass
class StepState:
    """What one denoising step saw; handed to the `on_step` callback before the latents are updated."""

    stage: str                   # "base" or "sr"
    index: int
    num_steps: int
    timestep: int
    video: torch.Tensor          # latent entering the step, after frame-0 injection
    audio: torch.Tensor
    video_velocity: torch.Tensor  # guided velocities handed to the schedulers
    audio_velocity: torch.Tensor


StepCallback = Callable[[StepState], None]


@dataclass
class SamplingResult:
    video: torch.Tensor           # final video latent: SR resolution when the SR stage ran
    audio: torch.Tensor           # clean audio latent of the base stage
    base_video: torch.Tensor      # base-resolution video latent
    stage_seconds: dict[str, float]   # wall time per stage: "base denoising", "super-resolution"


def dit_velocity_fn(model: DiTModel, coords_style: str) -> VelocityFn:
    """The DiT as a velocity function: pack [video | audio | text], forward, unpack.

    coords_style "v2" for the base/distill model, "v1" for the SR model.
    """
    @torch.no_grad()
    def velocity(video: torch.Tensor, audio: torch.Tensor, text: TextEmbedding):
        packed = pack(video, audio, text.features, text.length, coords_style=coords_style)
        return unpack(model(*packed.model_inputs()), packed)
    return velocity


# ---------------------------------------------------------------------------------------------------------------
# Guidance


def guide(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale) -> torch.Tensor:
    """v = v_uncond + s·(v_cond − v_uncond)."""
    return v_uncond + scale * (v_cond - v_uncond)


def base_video_scale(timestep: int, guidance: GuidanceConfig) -> float:
    return guidance.video_scale if timestep > guidance.late_timestep else guidance.late_video_scale


def sr_video_scale(num_frames: int, guidance: GuidanceConfig) -> torch.Tensor:
    """Per-latent-frame scale [1,1,T,1,1]: the early scale for the first frames (against over-exposure in I2V)."""
    scale = torch.full((num_frames,), guidance.sr_video_scale)
    scale[:guidance.sr_early_frames] = min(guidance.sr_early_video_scale, guidance.sr_video_scale)
    return scale.view(1, 1, num_frames, 1, 1)


def _with_image(video: torch.Tensor, image_latent: torch.Tensor | None) -> torch.Tensor:
    return video if image_latent is None else inject_reference_image(video, image_latent)


def _noise(shape: tuple[int, ...], generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    """Standard normal drawn on the generator's device (a CPU generator gives the same numbers whatever the
    target device), then moved to `device` (from pinned memory without waiting, when that is a GPU)."""
    noise = torch.randn(shape, generator=generator, device=generator.device)
    if noise.device.type == "cpu" and torch.device(device).type == "cuda":
        return noise.pin_memory().to(device, non_blocking=True)
    return noise.to(device)


# ---------------------------------------------------------------------------------------------------------------
# One denoising loop


def denoise(velocity_fn: VelocityFn, video: torch.Tensor, audio: torch.Tensor, text: TextEmbedding,
            negative_text: TextEmbedding | None, *, num_steps: int, cfg_number: int, super_resolution: bool,
            guidance: GuidanceConfig = GuidanceConfig(), shift: float = DEFAULT_SHIFT,
            image_latent: torch.Tensor | None = None, generator: torch.Generator | None = None,
            on_step: StepCallback | None = None, audio_is_condition: bool = False,
            distill_steps_a2v_audio: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """`evaluate_with_latent`: returns (video, audio) after num_steps.

    Dispatch as in the original: cfg_number = 1 outside SR takes DDIM-style steps with fresh noise for video and
    audio (needs `generator`); everything else takes UniPC steps, and the audio is held fixed during SR.
    `audio_is_condition` (a2v: the audio is an encoded clip, not noise) holds the audio fixed in UniPC steps; DDIM-
    style steps still update it unless `distill_steps_a2v_audio` is False (its noise is drawn either way, so the
    video's noise draws do not move).
    """
    distilled = cfg_number == 1 and not super_resolution
    steps_audio = not audio_is_condition or (distilled and distill_steps_a2v_audio)
    video_scheduler, audio_scheduler = FlowUniPCScheduler(num_steps, shift), FlowUniPCScheduler(num_steps, shift)
    sigmas, timesteps = video_scheduler.sigmas, video_scheduler.timesteps
    frame_scale = sr_video_scale(video.shape[2], guidance).to(video.device) if super_resolution else None
    if distilled:   # every step's (video, audio) noise, drawn up front in the original order: the same numbers,
        # and the loop itself then never waits for a host-to-device copy
        noises = [(_noise(video.shape, generator, video.device), _noise(audio.shape, generator, audio.device))
                  for _ in timesteps]
    for index, timestep in enumerate(timesteps.tolist()):
        video = _with_image(video, image_latent)
        v_video, v_audio = velocity_fn(video, audio, text)
        if cfg_number == 2:
            u_video, u_audio = velocity_fn(video, audio, negative_text)
            video_scale = frame_scale if super_resolution else base_video_scale(timestep, guidance)
            v_video = guide(v_video, u_video, video_scale)
            v_audio = guide(v_audio, u_audio, guidance.audio_scale)
        if on_step is not None:
            stage = "sr" if super_resolution else "base"
            on_step(StepState(stage, index, num_steps, timestep, video, audio, v_video, v_audio))
        if distilled:
            sigma, sigma_next = sigmas[index], sigmas[index + 1]
            video_noise, audio_noise = noises[index]
            video = ddim_step(v_video, video, sigma, sigma_next, video_noise)
            if steps_audio:
                audio = ddim_step(v_audio, audio, sigma, sigma_next, audio_noise)
        else:
            video = video_scheduler.step(v_video, video)
            if steps_audio and not super_resolution:
                audio = audio_scheduler.step(v_audio, audio)
    return _with_image(video, image_latent), audio


# ---------------------------------------------------------------------------------------------------------------
# The two stages of `evaluate`


def sample_base(velocity_fn: VelocityFn, text: TextEmbedding, negative_text: TextEmbedding | None,
                shape: LatentShape, config: SamplerConfig, generator: torch.Generator,
                image_latent: torch.Tensor | None = None, on_step: StepCallback | None = None,
                device: str | torch.device = "cpu",
                audio_latent: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Base (or distilled) stage from pure noise: audio noise is drawn first, then video noise.

    With `audio_latent` (a2v: an encoded clip [1, Na, 64] with Na = shape.audio_frames) no audio noise is drawn
    and the audio tokens start clean.
    """
    if audio_latent is None:
        audio = _noise(shape.audio, generator, device)
    elif tuple(audio_latent.shape) != shape.audio:
        raise ValueError(f"audio latent {tuple(audio_latent.shape)} does not match the clip's {shape.audio}")
    else:
        audio = audio_latent.to(device)
    video = _noise(shape.video, generator, device)
    return denoise(velocity_fn, video, audio, text, negative_text, num_steps=config.num_steps,
                   cfg_number=config.cfg_number, super_resolution=False, guidance=config.guidance,
                   shift=config.shift, image_latent=image_latent, generator=generator, on_step=on_step,
                   audio_is_condition=audio_latent is not None, distill_steps_a2v_audio=config.distill_steps_a2v_audio)


def super_resolve(velocity_fn: VelocityFn, video: torch.Tensor, audio: torch.Tensor, text: TextEmbedding,
                  negative_text: TextEmbedding | None, height: int, width: int, config: SamplerConfig,
                  generator: torch.Generator, image_latent: torch.Tensor | None = None,
                  on_step: StepCallback | None = None) -> torch.Tensor:
    """SR stage on the clean base latents; returns the SR video latent [1,48,T,height,width].

    The upsampled video is re-noised to DDPM step `sr_noise_value` and denoised from σ = 0.9998 anyway (the SR
    model infers the noise level); the audio tokens are a fixed noisy mix of the base audio, never stepped.
    `image_latent` is the reference image encoded at the SR resolution.
    """
    upsampled = upsample_video_latent(video, height, width)
    video_noise = _noise(upsampled.shape, generator, upsampled.device)
    audio_noise = _noise(audio.shape, generator, audio.device)
    sr_video = renoise_for_sr(upsampled, video_noise, config.sr_noise_value)
    sr_audio = sr_audio_input(audio, audio_noise, config.sr_audio_noise_scale)
    sr_video, _ = denoise(velocity_fn, sr_video, sr_audio, text, negative_text, num_steps=config.sr_num_steps,
                          cfg_number=config.sr_cfg_number, super_resolution=True, guidance=config.guidance,
                          shift=config.shift, image_latent=image_latent, generator=generator, on_step=on_step)
    return sr_video


@contextmanager
def _stopwatch(stage_seconds: dict[str, float], stage: str, device: torch.device):
    """Wall time of the block, waiting for queued GPU work at both ends."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    sync()
    start = time.perf_counter()
    yield
    sync()
    stage_seconds[stage] = time.perf_counter() - start


def generate_latents(velocity_fn: VelocityFn, text: TextEmbedding, negative_text: TextEmbedding | None,
                     shape: LatentShape, config: SamplerConfig, seed: int | torch.Generator, *,
                     sr_velocity_fn: VelocityFn | None = None, sr_size: tuple[int, int] | None = None,
                     image_latent: torch.Tensor | None = None, sr_image_latent: torch.Tensor | None = None,
                     on_step: StepCallback | None = None, device: str | torch.device = "cpu",
                     audio_latent: torch.Tensor | None = None) -> SamplingResult:
    """Base stage, then the SR stage when `sr_velocity_fn` and `sr_size` (latent height, width) are given.

    All noise comes from a CPU generator seeded with `seed`, in the original's order, so a CPU run reproduces
    the original's CPU draws exactly. `seed` may be that generator itself when something drew from it first (a2v:
    the audio encoder's posterior sample, given here as `audio_latent`).
    """
    device = torch.device(device)
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    stage_seconds: dict[str, float] = {}
    with _stopwatch(stage_seconds, "base denoising", device):
        video, audio = sample_base(velocity_fn, text, negative_text, shape, config, generator, image_latent,
                                   on_step, device, audio_latent)
    base_video = video
    if sr_velocity_fn is not None and sr_size is not None:
        with _stopwatch(stage_seconds, "super-resolution", device):
            video = super_resolve(sr_velocity_fn, base_video, audio, text, negative_text, *sr_size, config,
                                  generator, sr_image_latent, on_step)
    return SamplingResult(video, audio, base_video, stage_seconds)
