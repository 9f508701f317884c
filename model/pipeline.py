"""The daVinci-MagiHuman generator end to end: prompt (+ reference image, + reference speech) in, mp4 with speech
out (spec 3.4, 4.5–4.8, 7.1, 7.2, Appendix C).

Stages, each timed (wall clock, device synchronised), in the original's order:

    audio encoding     a2v only: the reference speech through the Oobleck encoder (clean audio tokens)
    text encoding      T5Gemma features of the prompt (and, for CFG, of the fixed negative prompt)
    image encoding     TI2V only: the reference image through the Wan2.2 encoder, at base and SR resolution
    base denoising     base DiT, 32 UniPC steps with CFG (or the distilled DiT, 8 steps)
    super-resolution   SR presets: trilinear latent upsample, re-noise, 5 steps of the SR DiT
    video decode       Turbo-VAED (default) or the Wan2.2 decoder → uint8 frames at 25 fps
    audio decode       Oobleck VAE → 51.2 kHz stereo, FFT-resampled to 44.1 kHz
    write mp4          H.264 + AAC (only when an output path is given)

Sizes: a clip of s seconds has Na = 25s+1 audio latents, T = ⌊25s/4⌋+1 latent frames and F = 4(T−1)+1 video
frames (a2v: Na is the encoded speech's length, T follows it); pixel sizes round down to multiples of 32
(model.shapes). Noise comes from one CPU generator seeded with `seed`, drawn in the original's order (see
model.sampling).

Two ways to get the components:

    pipe = MagiHumanPipeline.from_checkpoints("/ckpt", preset="distill", device="cuda")   # layout: CHECKPOINT_LAYOUT
    pipe = MagiHumanPipeline.tiny_random(preset="sr_540p")    # "magihuman-tiny-random": random weights, noise out
    result = pipe.generate("A man says ...", seconds=2, width=448, height=256, seed=42, out="clip.mp4")
    result.timings   # {"text encoding": 0.01, "base denoising": 1.9, ...}
    pipe.generate("A man says ...", audio="speech.wav", seconds=4, out="a2v.mp4")   # lips follow the given speech

The tiny random stack keeps every structural size that shapes the output (16× spatial and 4× temporal video
upsampling, the 2048-sample audio hop at 51.2 kHz, 48/64 latent channels) and only shrinks widths and depths, so
its clips have the real frame count, fps, resolution and audio length while their content is noise.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from model.audio_vae import (OUTPUT_SAMPLE_RATE, PIPELINE_SAMPLE_RATE, AudioVAE, OobleckConfig, load_audio_vae,
                             load_reference_audio)
from model.checkpoint import load_dit
from model.dit import DiTConfig, DiTModel
from model.fastpath import FastPathConfig, FastVelocity
from model.sampling import (BASE_SAMPLER, DISTILL_SAMPLER, SamplerConfig, SamplingResult, StepState, VelocityFn,
                            dit_velocity_fn, generate_latents)
from model.shapes import AUDIO_LATENTS_PER_SECOND, PATCH_SIZE, PIXELS_PER_LATENT, LatentShape, latent_side
from model.text_encoder import (NEGATIVE_PROMPT, T5GemmaTextEncoder, TextEmbedding, TextEncoder,
                                TinyRandomTextEncoder, TinyTextEncoderConfig)
from model.turbo_vaed import TurboVAED, TurboVAEDConfig, load_turbo_vaed
from model.video_io import write_mp4
from model.wan_vae import WanVAE, WanVAEConfig, load_wan_vae

log = logging.getLogger(__name__)

FPS = 25
DEFAULT_SECONDS = 4
DEFAULT_WIDTH, DEFAULT_HEIGHT = 448, 256        # br_width / br_height of every shipped example
DEFAULT_SEED = 42                                # run_offline's default
DEFAULT_PRESET = "distill"                       # the fast configuration
RESOLUTION_MULTIPLE = PATCH_SIZE * PIXELS_PER_LATENT   # latent sides are even: pixel sides are multiples of 32

MODEL_LABEL = "magihuman"
TINY_RANDOM_LABEL = "magihuman-tiny-random"

ProgressFn = Callable[[str, int, int], None]     # (stage, steps done, steps in the stage)


# ---------------------------------------------------------------------------------------------------------------
# Presets: the four shipped example configurations (spec 4.8)


@dataclass(frozen=True)
class Preset:
    name: str
    dit: str                                     # checkpoint directory of the base-stage DiT
    sampler: SamplerConfig
    sr_model: str | None = None                  # checkpoint directory of the SR DiT
    sr_size: tuple[int, int] | None = None       # SR (width, height) in pixels
    sr_local_attention: bool = False             # 1080p: local attention in 32 of the 40 SR layers
    description: str = ""


PRESETS = {
    preset.name: preset for preset in (
        Preset("base", "base", BASE_SAMPLER, description="base DiT, 32 UniPC steps, CFG 2 (prompt vs negative)"),
        Preset("distill", "distill", DISTILL_SAMPLER, description="distilled DiT, 8 DDIM-style steps, no CFG"),
        Preset("sr_540p", "base", BASE_SAMPLER, "540p_sr", (896, 512),
               description="base DiT, then 5 SR steps at 896x512"),
        Preset("sr_1080p", "base", BASE_SAMPLER, "1080p_sr", (1920, 1088), sr_local_attention=True,
               description="base DiT, then 5 SR steps at 1920x1088 with frame-local attention"),
    )
}


def resolve_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}") from None


# ---------------------------------------------------------------------------------------------------------------
# Sizes


def clip_shape(seconds: int, width: int, height: int) -> LatentShape:
    """Latent sizes of a request; raises for lengths and sizes the model cannot make."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
        raise ValueError(f"seconds must be a whole number >= 1 (the original's --seconds is an int), got {seconds!r}")
    check_resolution(width, height)
    return LatentShape.for_request(seconds, width, height)


def check_resolution(width: int, height: int) -> None:
    if width < RESOLUTION_MULTIPLE or height < RESOLUTION_MULTIPLE:
        raise ValueError(f"width and height must be at least {RESOLUTION_MULTIPLE} pixels, got {width}x{height}")


def round_resolution(width: int, height: int) -> tuple[int, int]:
    """Pixel size actually generated: each side rounded down to a multiple of 32."""
    return PIXELS_PER_LATENT * latent_side(width), PIXELS_PER_LATENT * latent_side(height)


def audio_samples(audio_latents: int) -> int:
    """Length of the 44.1 kHz waveform decoded from Na latents: each is 40 ms (2048 samples at 51.2 kHz)."""
    return audio_latents * OUTPUT_SAMPLE_RATE // AUDIO_LATENTS_PER_SECOND


# ---------------------------------------------------------------------------------------------------------------
# Components


@dataclass
class Components:
    """Every network of the stack, on the CPU until a pipeline places them."""

    text_encoder: TextEncoder
    dit: DiTModel
    sr_dit: DiTModel | None
    turbo_vaed: TurboVAED | None                 # the default video decoder
    wan_vae: WanVAE | None                       # TI2V image encoder; fallback video decoder
    audio_vae: AudioVAE
    label: str                                   # MODEL_LABEL or TINY_RANDOM_LABEL
    weight_files: list[Path] = field(default_factory=list)

    @property
    def random_weights(self) -> bool:
        return self.label == TINY_RANDOM_LABEL


CHECKPOINT_LAYOUT = """\
CHECKPOINTS/                      (the published layout; only what the preset and request need must exist)
  base/ distill/ 540p_sr/ 1080p_sr/
                                  DiT weights: model.safetensors, or model-0000k-of-0000N.safetensors shards with
                                  model.safetensors.index.json; any file may be .zst-compressed. Optional
                                  config.json: DiT architecture overrides (default: the released 15B config)
  turbo_vae/                      TurboV3-Wan22-TinyShallow_7_7.json + checkpoint-*.ckpt (EMA weights)
  t5gemma-9b-9b-ul2/              transformers directory of google/t5gemma-9b-9b-ul2 (config, tokenizer, weights)
  stable-audio-open-1.0/          model_config.json + model.safetensors
  Wan2.2-TI2V-5B/Wan2.2_VAE.pth   Wan2.2 VAE: TI2V image encoding, and the video decoder without turbo_vae/
"""

TURBO_DIR, TEXT_DIR, AUDIO_DIR, WAN_FILE = ("turbo_vae", "t5gemma-9b-9b-ul2", "stable-audio-open-1.0",
                                            "Wan2.2-TI2V-5B/Wan2.2_VAE.pth")


def _required(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found at {path}; expected checkpoint layout:\n{CHECKPOINT_LAYOUT}")
    return path


def _files(directory: Path, *patterns: str) -> list[Path]:
    return sorted(p for pattern in patterns for p in directory.glob(pattern) if p.is_file())


@dataclass(frozen=True)
class CheckpointPaths:
    """The files one preset uses from a directory in CHECKPOINT_LAYOUT, checked to exist."""

    dit: Path
    sr_dit: Path | None
    turbo_vaed: tuple[Path, Path] | None         # (config .json, checkpoint)
    wan_vae: Path | None
    audio_vae: Path
    text_encoder: Path

    @classmethod
    def find(cls, checkpoints: str | Path, preset: Preset) -> "CheckpointPaths":
        root = _required(Path(checkpoints), "checkpoint directory")
        dit = _required(root / preset.dit, "DiT checkpoint directory")
        sr_dit = _required(root / preset.sr_model, "SR DiT checkpoint directory") if preset.sr_model else None
        turbo_vaed = None
        if (root / TURBO_DIR).is_dir():
            configs, weights = _files(root / TURBO_DIR, "*.json"), _files(root / TURBO_DIR, "*.ckpt", "*.pt", "*.pth")
            if not configs or not weights:
                raise FileNotFoundError(f"{root / TURBO_DIR} needs a Turbo-VAED .json config and a .ckpt checkpoint")
            turbo_vaed = (configs[0], weights[0])
        wan_vae = root / WAN_FILE if (root / WAN_FILE).is_file() else None
        if turbo_vaed is None and wan_vae is None:
            _required(root / TURBO_DIR, "a video decoder (Turbo-VAED, or the Wan2.2 VAE)")
        return cls(dit, sr_dit, turbo_vaed, wan_vae, audio_vae=_required(root / AUDIO_DIR, "Stable-Audio-Open VAE"),
                   text_encoder=_required(root / TEXT_DIR, "T5Gemma text encoder"))

    def weight_files(self) -> list[Path]:
        """Every file whose bytes shape the output: weights, and the configs that build the networks."""
        dit_dirs = [d for d in (self.dit, self.sr_dit) if d is not None]
        files = [f for d in dit_dirs for f in _files(d, "*.safetensors", "*.safetensors.zst", "config.json")]
        files += list(self.turbo_vaed or ()) + ([self.wan_vae] if self.wan_vae else [])
        files += _files(self.audio_vae, "model_config.json", "model.safetensors")
        return files + _files(self.text_encoder, "*.safetensors", "*.json", "*.model")


def load_dit_directory(directory: Path, sr_1080p: bool = False) -> DiTModel:
    """A DiT checkpoint directory (with an optional config.json) → model on the CPU, filled strictly."""
    config_file = directory / "config.json"
    cfg = DiTConfig.from_dict(json.loads(config_file.read_text())) if config_file.exists() else DiTConfig()
    return load_dit(directory, cfg.sr_1080p() if sr_1080p else cfg)


def load_components(checkpoints: str | Path, preset: Preset, vae_dtype: torch.dtype = torch.float32,
                    text_dtype: torch.dtype = torch.bfloat16) -> Components:
    """The networks a preset needs from a directory in CHECKPOINT_LAYOUT."""
    paths = CheckpointPaths.find(checkpoints, preset)
    return Components(
        text_encoder=T5GemmaTextEncoder(paths.text_encoder, "cpu", text_dtype),
        dit=load_dit_directory(paths.dit),
        sr_dit=load_dit_directory(paths.sr_dit, sr_1080p=preset.sr_local_attention) if paths.sr_dit else None,
        turbo_vaed=load_turbo_vaed(*paths.turbo_vaed, dtype=vae_dtype) if paths.turbo_vaed else None,
        wan_vae=load_wan_vae(paths.wan_vae, dtype=vae_dtype) if paths.wan_vae else None,
        audio_vae=load_audio_vae(paths.audio_vae),
        label=MODEL_LABEL,
        weight_files=paths.weight_files())


# The tiny random stack: widths and depths shrink, every size that shapes the output stays, and every kind of
# layer is still there (DiT: a 3-expert GELU7 layer, a shared SwiGLU7 layer, a 3-expert SwiGLU7 layer, GQA;
# Turbo-VAED: the mid block, both upsampler kinds, ReLU-first ResNets, channel-changing ResNets with shortcuts, the
# released 7/7 windows). It is sized to cost seconds, not minutes, for a 5-s 448x256 clip on a 2-core CPU.
TINY_TEXT = TinyTextEncoderConfig(width=64, num_layers=2, num_heads=4)
TINY_DIT = DiTConfig(num_layers=3, hidden_size=32, head_dim=16, num_query_groups=1, mm_layers=(0, 2),
                     gelu7_layers=(0,), text_in_channels=TINY_TEXT.width)
TINY_TURBO_VAED = TurboVAEDConfig(decoder_block_out_channels=(2, 4, 6, 8), decoder_layers_per_block=(1, 1, 1, 1, 1))
TINY_WAN_VAE = WanVAEConfig(dim=4, dec_dim=4)
TINY_AUDIO_ENCODER = OobleckConfig(channels=4, latent_dim=128)
TINY_AUDIO_DECODER = OobleckConfig(channels=4, latent_dim=64)


def tiny_stack_fingerprint() -> str:
    """sha256 of the tiny random stack's configuration: what its clips depend on besides the code and the seed."""
    configs = (TINY_TEXT, TINY_DIT, TINY_TURBO_VAED, TINY_WAN_VAE, TINY_AUDIO_ENCODER, TINY_AUDIO_DECODER)
    return hashlib.sha256(repr(configs).encode()).hexdigest()


def randomize_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Deterministic random weights: every weight matrix or kernel (more than one input per output row) is drawn
    N(0, 1/fan_in) from `generator` in `named_parameters()` order; biases, norm scales and per-channel
    activation parameters keep their constructor values."""
    with torch.no_grad():
        for param in module.parameters():
            fan_in = param[0].numel() if param.dim() >= 2 else 1
            if fan_in > 1:
                param.copy_(torch.randn(param.shape, generator=generator) / fan_in ** 0.5)
    return module.eval()


def tiny_random_components(preset: Preset, seed: int = 0) -> Components:
    """The whole stack with tiny random weights, the same for the same seed (labelled TINY_RANDOM_LABEL)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):      # constructors' default inits must not touch the global RNG
        torch.manual_seed(seed)
        text_encoder = TinyRandomTextEncoder(replace(TINY_TEXT, seed=seed))
        dit = DiTModel(TINY_DIT).eval()
        dit.init_weights_(generator)
        turbo_vaed = randomize_(TurboVAED(TINY_TURBO_VAED), generator)
        wan_vae = randomize_(WanVAE(TINY_WAN_VAE), generator)
        audio_vae = randomize_(AudioVAE(TINY_AUDIO_ENCODER, TINY_AUDIO_DECODER), generator)
        sr_dit = None
        if preset.sr_model:
            sr_dit = DiTModel(TINY_DIT.sr_1080p() if preset.sr_local_attention else TINY_DIT).eval()
            sr_dit.init_weights_(generator)
    return Components(text_encoder, dit, sr_dit, turbo_vaed, wan_vae, audio_vae, TINY_RANDOM_LABEL)


# ---------------------------------------------------------------------------------------------------------------
# Placement (spec 7.2)


class Residency:
    """Where the networks run. Without offload every network stays on the device. With offload they live on the
    CPU and one at a time moves to the device when a stage needs it; the previous one goes back to the CPU."""

    def __init__(self, device: torch.device, offload: bool):
        self.device, self.offload = device, offload
        self.resident: nn.Module | None = None

    def place(self, modules: list[nn.Module]) -> None:
        for module in modules:
            module.to("cpu" if self.offload else self.device)

    def use(self, module: nn.Module) -> nn.Module:
        if self.offload and self.resident is not module:
            if self.resident is not None:
                self.resident.to("cpu")
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
            module.to(self.device)
            self.resident = module
        return module


def resident(residency: Residency, dit: DiTModel, coords_style: str, velocity: VelocityFn | None = None) -> VelocityFn:
    """`velocity` (default: `dit_velocity_fn`) of a DiT that is moved to the device (if offloaded) before every
    forward."""
    velocity = velocity or dit_velocity_fn(dit, coords_style)

    def velocity_on_device(video: torch.Tensor, audio: torch.Tensor, text: TextEmbedding):
        residency.use(dit)
        return velocity(video, audio, text)
    return velocity_on_device


# ---------------------------------------------------------------------------------------------------------------
# The pipeline


@dataclass
class GenerationResult:
    frames: np.ndarray            # uint8 [F, H, W, 3]
    audio: np.ndarray             # float32 [N, 2] at sample_rate
    sample_rate: int
    fps: int
    timings: dict[str, float]     # wall seconds per stage, in stage order
    latents: SamplingResult
    label: str
    preset: str
    seed: int

    def save(self, path: str | Path) -> None:
        write_mp4(path, self.frames, self.fps, self.audio, self.sample_rate)


def prepare_image(image: str | Path | Image.Image, width: int, height: int) -> torch.Tensor:
    """Reference image → [1, 3, 1, height, width] in [-1, 1]: centre crop to the target aspect ratio (full height
    if the image is relatively wider, else full width), then a Lanczos resize to exactly width×height."""
    if not isinstance(image, Image.Image):
        image = Image.open(image)
    image = image.convert("RGB")
    w, h = image.size
    if w * height > h * width:
        crop_w, crop_h = int(h * width / height), h
    else:
        crop_w, crop_h = w, int(w * height / width)
    left, top = (w - crop_w) // 2, (h - crop_h) // 2
    image = image.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)) / 255.0 * 2.0 - 1.0
    return pixels.permute(2, 0, 1)[None, :, None]


def video_frames(video: torch.Tensor) -> np.ndarray:
    """Decoded video [1, 3, F, H, W] in [-1, 1] → uint8 frames [F, H, W, 3] on the CPU."""
    # (0.5·x + 0.5).clamp(0, 1)·255 → uint8, in place: a 5-s 448×256 clip is 0.17 GB of floats
    video = video[0].float().mul_(0.5).add_(0.5).clamp_(0, 1).mul_(255).to(torch.uint8)
    return video.permute(1, 2, 3, 0).contiguous().cpu().numpy()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class MagiHumanPipeline:
    """T2V / TI2V generation with one preset. `offload` keeps networks on the CPU between stages (small GPUs);
    `decoder` is "turbo" (Turbo-VAED, the default) or "wan" (the Wan2.2 decoder, also used without Turbo-VAED);
    `fast` the GPU fast paths of `model.fastpath` (default: none)."""

    def __init__(self, components: Components, preset: Preset | str, device: str | torch.device | None = None,
                 offload: bool = False, decoder: str = "turbo", fast: FastPathConfig = FastPathConfig()):
        self.components = components
        self.preset = resolve_preset(preset) if isinstance(preset, str) else preset
        if self.preset.sr_model and components.sr_dit is None:
            raise ValueError(f"preset {self.preset.name!r} needs an SR DiT")
        if decoder not in ("turbo", "wan"):
            raise ValueError(f"decoder must be 'turbo' or 'wan', got {decoder!r}")
        if decoder == "turbo" and components.turbo_vaed is None:
            if components.wan_vae is None:
                raise ValueError("no video decoder: neither Turbo-VAED nor the Wan2.2 VAE is loaded")
            log.warning("no Turbo-VAED: decoding video with the Wan2.2 decoder")
            decoder = "wan"
        if decoder == "wan" and components.wan_vae is None:
            raise ValueError("decoder 'wan' needs the Wan2.2 VAE, which is not loaded")
        self.decoder = decoder
        self.device = torch.device(device) if device is not None else default_device()
        self.residency = Residency(self.device, offload)
        self.residency.place(self._modules())
        self._negative_text: TextEmbedding | None = None
        fast.check_device(self.device)
        if offload and (fast.cuda_graphs or fast.fp8_linears):
            raise ValueError("cuda_graphs and fp8_linears keep device copies of the DiT's weights: not with offload")
        self.fast = fast
        self._fast_velocity: dict[int, FastVelocity] = {}     # per DiT: its plans and compiled layers persist
        if fast.vae_channels_last and components.turbo_vaed is not None:
            components.turbo_vaed.to_channels_last()

    @classmethod
    def from_checkpoints(cls, checkpoints: str | Path, preset: str = DEFAULT_PRESET, device: str | None = None,
                         offload: bool = False, decoder: str = "turbo",
                         fast: FastPathConfig = FastPathConfig()) -> "MagiHumanPipeline":
        device = torch.device(device) if device is not None else default_device()
        vae_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32   # the original runs VAEs in bf16
        components = load_components(checkpoints, resolve_preset(preset), vae_dtype=vae_dtype)
        return cls(components, preset, device, offload, decoder, fast)

    @classmethod
    def tiny_random(cls, preset: str = DEFAULT_PRESET, seed: int = 0, device: str | None = None, offload: bool = False,
                    decoder: str = "turbo", fast: FastPathConfig = FastPathConfig()) -> "MagiHumanPipeline":
        return cls(tiny_random_components(resolve_preset(preset), seed), preset, device, offload, decoder, fast)

    @property
    def label(self) -> str:
        return self.components.label

    def _modules(self) -> list[nn.Module]:
        c = self.components
        networks = [_text_module(c.text_encoder), c.dit, c.sr_dit, c.turbo_vaed, c.wan_vae, c.audio_vae]
        return [module for module in networks if module is not None]

    # -- stages ---------------------------------------------------------------------------------------------------

    def encode_text(self, prompt: str) -> tuple[TextEmbedding, TextEmbedding | None]:
        """Prompt features, and the negative prompt's (encoded once per pipeline) when a stage uses CFG."""
        encoder = self.components.text_encoder
        self.residency.use(_text_module(encoder))
        if isinstance(encoder, T5GemmaTextEncoder):
            encoder.device = self.device                # its tokens must follow the weights
        text = _on(encoder.encode(prompt), self.device)
        sampler = self.preset.sampler
        if self._negative_text is None and (sampler.cfg_number == 2 or
                                            (self.preset.sr_model and sampler.sr_cfg_number == 2)):
            self._negative_text = _on(encoder.encode(NEGATIVE_PROMPT), self.device)
        return text, self._negative_text

    def encode_image(self, image: str | Path | Image.Image, width: int, height: int) -> torch.Tensor:
        """Reference image at width×height pixels → clean latent frame [1, 48, 1, height/16, width/16]."""
        if self.components.wan_vae is None:
            raise ValueError(f"TI2V needs the Wan2.2 VAE ({WAN_FILE} in the checkpoint directory)")
        vae = self.residency.use(self.components.wan_vae)
        return vae.encode(prepare_image(image, width, height).to(self.device))

    def encode_audio(self, audio: str | Path, seconds: int | None, generator: torch.Generator) -> torch.Tensor:
        """a2v: reference audio (cut to `seconds`) → clean audio latent [1, Na, 64], Na ≈ 25 per second; the
        posterior sample draws from `generator`."""
        waveform = load_reference_audio(audio, seconds)
        vae = self.residency.use(self.components.audio_vae)
        if waveform.shape[1] < vae.hop:
            raise ValueError(f"reference audio {audio}: {waveform.shape[1]} samples at {PIPELINE_SAMPLE_RATE} Hz, "
                             f"shorter than one audio latent ({vae.hop} samples, 40 ms)")
        return vae.encode_audio(waveform.to(self.device), generator)

    def sample(self, text: TextEmbedding, negative_text: TextEmbedding | None, shape: LatentShape,
               seed: int | torch.Generator, sr_shape: tuple[int, int] | None = None,
               image_latent: torch.Tensor | None = None, sr_image_latent: torch.Tensor | None = None,
               on_step: Callable[[StepState], None] | None = None, audio_latent: torch.Tensor | None = None,
               hold_audio: bool = False) -> SamplingResult:
        """Base (and SR) denoising: the original's loops with this pipeline's DiTs (coords v2 base, v1 SR).

        `audio_latent`: a2v, the encoded reference audio as clean audio tokens; `hold_audio` keeps it fixed in
        the distilled preset's steps too (see `SamplerConfig.distill_steps_a2v_audio`).
        """
        sr_dit = self.components.sr_dit if sr_shape is not None else None
        sampler = replace(self.preset.sampler, distill_steps_a2v_audio=not hold_audio)
        return generate_latents(
            self._velocity(self.components.dit, "v2"), text, negative_text, shape, sampler,
            seed, sr_velocity_fn=self._velocity(sr_dit, "v1") if sr_dit is not None else None,
            sr_size=sr_shape, image_latent=image_latent, sr_image_latent=sr_image_latent, on_step=on_step,
            device=self.device, audio_latent=audio_latent)

    def _velocity(self, dit: DiTModel, coords_style: str) -> VelocityFn:
        if self.fast.plain:
            return resident(self.residency, dit, coords_style)
        if id(dit) not in self._fast_velocity:
            self.residency.use(dit)     # torchao quantises the weights where they are
            self._fast_velocity[id(dit)] = FastVelocity(dit, coords_style, self.fast)
        return resident(self.residency, dit, coords_style, self._fast_velocity[id(dit)])

    def decode_video(self, latent: torch.Tensor) -> np.ndarray:
        """Video latent [1, 48, T, h, w] → uint8 frames [4(T−1)+1, 16h, 16w, 3]."""
        if self.decoder == "turbo":
            vae = self.residency.use(self.components.turbo_vaed)
            video = vae.decode(latent, output_device=torch.device("cpu") if self.residency.offload else None)
        else:   # as the original, the Wan2.2 decoder splits the width over the DiT's context-parallel group
            parallel = self.components.dit.context_parallel
            video = self.residency.use(self.components.wan_vae).decode(latent, parallel.group if parallel else None)
        return video_frames(video)

    def decode_audio(self, latent: torch.Tensor) -> np.ndarray:
        """Audio latent [1, Na, 64] → float32 [int(Na·2048·441/512), 2] at 44.1 kHz."""
        return self.residency.use(self.components.audio_vae).decode(latent)

    # -- everything -----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, prompt: str, image: str | Path | Image.Image | None = None, seconds: int = DEFAULT_SECONDS,
                 width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT, seed: int = DEFAULT_SEED,
                 sr_size: tuple[int, int] | None = None, out: str | Path | None = None,
                 progress: ProgressFn | None = None, audio: str | Path | None = None,
                 hold_audio: bool = False) -> GenerationResult:
        """One clip. width×height is the base resolution (rounded down to multiples of 32); SR presets then
        generate at `sr_size` (default: the preset's). With `out`, the mp4 is written there.

        `audio` (a2v, spec 4.7): a speech file that conditions the clip. It is cut to `seconds`, encoded, and the
        clip follows its length (Na latents → T = ⌊(Na−1)/4⌋+1 latent frames); its audio track is that speech
        through the audio VAE. `hold_audio`: see `sample`.
        """
        shape = clip_shape(seconds, width, height)
        sr_shape = None
        if self.preset.sr_model:
            sr_width, sr_height = sr_size or self.preset.sr_size
            check_resolution(sr_width, sr_height)
            sr_shape = (latent_side(sr_height), latent_side(sr_width))
        generator = torch.Generator().manual_seed(seed)
        timings: dict[str, float] = {}
        audio_latent = None
        if audio is not None:   # the posterior sample is the first draw, before the video noise, as in the original
            with self._stage("audio encoding", timings, progress):
                audio_latent = self.encode_audio(audio, seconds, generator)
            shape = LatentShape.for_audio(audio_latent.shape[1], width, height)
        with self._stage("text encoding", timings, progress):
            text, negative_text = self.encode_text(prompt)
        image_latent = sr_image_latent = None
        if image is not None:   # both resolutions up front: encoding draws no noise, so the RNG order is kept
            with self._stage("image encoding", timings, progress):
                image_latent = self.encode_image(image, *shape.pixel_size)
                if sr_shape is not None:
                    sr_image_latent = self.encode_image(image, *round_resolution(sr_width, sr_height))

        def on_step(state: StepState) -> None:
            if progress is not None:
                progress(_STEP_STAGES[state.stage], state.index + 1, state.num_steps)

        latents = self.sample(text, negative_text, shape, generator, sr_shape, image_latent, sr_image_latent, on_step,
                              audio_latent, hold_audio)
        timings.update(latents.stage_seconds)
        with self._stage("video decode", timings, progress):
            frames = self.decode_video(latents.video)
        with self._stage("audio decode", timings, progress):
            audio = self.decode_audio(latents.audio)
        result = GenerationResult(frames, audio, OUTPUT_SAMPLE_RATE, FPS, timings, latents, self.label,
                                  self.preset.name, seed)
        if out is not None:
            with self._stage("write mp4", timings, progress):
                result.save(out)
        return result

    @contextmanager
    def _stage(self, name: str, timings: dict[str, float], progress: ProgressFn | None):
        if progress is not None:
            progress(name, 0, 1)
        self._synchronize()
        start = time.perf_counter()
        yield
        self._synchronize()
        timings[name] = time.perf_counter() - start
        if progress is not None:
            progress(name, 1, 1)

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


_STEP_STAGES = {"base": "base denoising", "sr": "super-resolution"}   # names generate_latents times them under


def _text_module(encoder: TextEncoder) -> nn.Module:
    return encoder.model if isinstance(encoder, T5GemmaTextEncoder) else encoder


def _on(text: TextEmbedding, device: torch.device) -> TextEmbedding:
    return TextEmbedding(text.features.to(device), text.length)
