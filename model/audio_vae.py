"""Stable-Audio-Open 1.0 "Oobleck" audio VAE, as the pipeline uses it (spec 4.6, 4.7, 5.3).

Entry points:

    vae = load_audio_vae("<stable_audio_dir>")     # model_config.json + model.safetensors (pretransform.model.*)
    waveform = vae.decode(latent)                  # DiT-space latent [1,Na,64] -> np.float32 [N,2] stereo, 44.1 kHz
    latent = vae.encode_audio(waveform)            # stereo [2,N] at 51.2 kHz -> [1,Na≈N/2048,64] (sampled)
    waveform = load_reference_audio("speech.wav", seconds=4)   # a2v input: [2, ≤4·51200], as the original loads it

One latent frame is a 2048-sample hop. The pipeline feeds and reads audio at a notional 51.2 kHz, so a latent
frame lasts 40 ms (one 25 fps video frame); the decoded waveform is then FFT-resampled by 441/512 to 44.1 kHz.
Lower level: `decode_latent` / `encode` work on [B, 64, Na] latents at 51.2 kHz.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal
import torch
import torch.nn as nn
import torch.nn.functional as F

PIPELINE_SAMPLE_RATE = 51_200   # rate the latents are produced/consumed at: 2048-sample hop = 40 ms
OUTPUT_SAMPLE_RATE = 44_100     # SAO's `sample_rate`; the decoded waveform is resampled to it
LONG_AUDIO_WINDOW_S = 29        # longer inputs are encoded in windows of this length ...
LONG_AUDIO_OVERLAP = 0.5        # ... overlapping by this fraction, cross-faded linearly in latent space


@dataclass
class OobleckConfig:
    """One side (encoder or decoder) of `model.pretransform.config` in SAO's `model_config.json`."""

    channels: int = 128
    c_mults: tuple[int, ...] = (1, 2, 4, 8, 16)
    strides: tuple[int, ...] = (2, 4, 4, 8, 8)
    latent_dim: int = 64            # encoder: 128 = mean ‖ scale
    io_channels: int = 2            # `in_channels` of the encoder, `out_channels` of the decoder
    final_tanh: bool = False

    @classmethod
    def from_dict(cls, config: dict) -> "OobleckConfig":
        if not config.get("use_snake", False):
            raise ValueError("Oobleck: only the SnakeBeta variant (use_snake=true, as in SAO 1.0) is implemented")
        return cls(channels=config["channels"], c_mults=tuple(config["c_mults"]), strides=tuple(config["strides"]),
                   latent_dim=config["latent_dim"],
                   io_channels=config.get("in_channels", config.get("out_channels")),
                   final_tanh=config.get("final_tanh", False))


# ---------------------------------------------------------------------------------------------------------------
# Building blocks


class SnakeBeta(nn.Module):
    """x + 1/β · sin²(α·x), with per-channel α = exp(alpha), β = exp(beta) (log-scale parameters)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x):                                       # [B, C, N]
        alpha = self.alpha.exp()[:, None]
        beta = self.beta.exp()[:, None]
        return x + (1.0 / (beta + 1e-9)) * torch.sin(x * alpha).pow(2)


class WeightNormConv(nn.Module):
    """A conv stored as `weight_g` (per-dim-0 magnitude) and `weight_v` (direction): weight = g·v/‖v‖."""

    def __init__(self, weight_shape: tuple[int, ...], bias_channels: int | None, **conv_kwargs):
        super().__init__()
        direction = nn.init.kaiming_uniform_(torch.empty(weight_shape), a=math.sqrt(5))   # PyTorch's conv init
        self.weight_v = nn.Parameter(direction)
        self.weight_g = nn.Parameter(direction.norm(dim=(1, 2), keepdim=True))
        self.bias = nn.Parameter(torch.zeros(bias_channels)) if bias_channels else None
        self.conv_kwargs = conv_kwargs

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_g * self.weight_v / self.weight_v.norm(dim=(1, 2), keepdim=True)


class WNConv1d(WeightNormConv):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, bias=True):
        super().__init__((out_channels, in_channels, kernel_size), out_channels if bias else None,
                         stride=stride, padding=padding, dilation=dilation)

    def forward(self, x):
        return F.conv1d(x, self.weight, self.bias, **self.conv_kwargs)


class WNConvTranspose1d(WeightNormConv):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__((in_channels, out_channels, kernel_size), out_channels, stride=stride, padding=padding)

    def forward(self, x):
        return F.conv_transpose1d(x, self.weight, self.bias, **self.conv_kwargs)


class ResidualUnit(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(channels), WNConv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation),
            SnakeBeta(channels), WNConv1d(channels, channels, 1),
        )

    def forward(self, x):
        return x + self.layers(x)


def residual_units(channels: int) -> list[nn.Module]:
    return [ResidualUnit(channels, dilation) for dilation in (1, 3, 9)]


class EncoderBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.layers = nn.Sequential(
            *residual_units(in_channels), SnakeBeta(in_channels),
            WNConv1d(in_channels, out_channels, 2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )

    def forward(self, x):
        return self.layers(x)


class DecoderBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(in_channels),
            WNConvTranspose1d(in_channels, out_channels, 2 * stride, stride=stride, padding=math.ceil(stride / 2)),
            *residual_units(out_channels),
        )

    def forward(self, x):
        return self.layers(x)


class OobleckEncoder(nn.Module):
    """Waveform [B, 2, N] -> [B, 2·64, N/2048] (mean ‖ scale of the posterior)."""

    def __init__(self, cfg: OobleckConfig):
        super().__init__()
        widths = [cfg.channels * m for m in (1, *cfg.c_mults)]
        self.layers = nn.Sequential(
            WNConv1d(cfg.io_channels, widths[0], 7, padding=3),
            *(EncoderBlock(widths[i], widths[i + 1], stride) for i, stride in enumerate(cfg.strides)),
            SnakeBeta(widths[-1]),
            WNConv1d(widths[-1], cfg.latent_dim, 3, padding=1),
        )

    def forward(self, x):
        return self.layers(x)


class OobleckDecoder(nn.Module):
    """Latent [B, 64, Na] -> waveform [B, 2, Na·2048]."""

    def __init__(self, cfg: OobleckConfig):
        super().__init__()
        widths = [cfg.channels * m for m in (1, *cfg.c_mults)]
        blocks = [DecoderBlock(widths[i + 1], widths[i], cfg.strides[i]) for i in reversed(range(len(cfg.strides)))]
        self.layers = nn.Sequential(
            WNConv1d(cfg.latent_dim, widths[-1], 7, padding=3),
            *blocks,
            SnakeBeta(widths[0]),
            WNConv1d(widths[0], cfg.io_channels, 7, padding=3, bias=False),
            *([nn.Tanh()] if cfg.final_tanh else []),
        )

    def forward(self, x):
        return self.layers(x)


# ---------------------------------------------------------------------------------------------------------------
# The VAE (state-dict layout of stable-audio-tools' autoencoder: encoder.layers.*, decoder.layers.*)


def merge_overlapping_windows(windows: list[torch.Tensor], overlap_ratio: float = LONG_AUDIO_OVERLAP) -> torch.Tensor:
    """Join equally long feature windows [B, L, C] that overlap by int(L·ratio) frames along dim 1.

    Across each overlap the earlier window fades out linearly while the next fades in (weights k/overlap).
    """
    length = windows[0].shape[1]
    overlap = int(length * overlap_ratio)
    fade_in = (torch.arange(overlap, dtype=windows[0].dtype, device=windows[0].device) / overlap)[None, :, None]
    merged = windows[0]
    for window in windows[1:]:
        blended = merged[:, -overlap:] * (1 - fade_in) + window[:, :overlap] * fade_in
        merged = torch.cat([merged[:, :-overlap], blended, window[:, overlap:]], dim=1)
    return merged


def resample_to_output_rate(waveform: np.ndarray) -> np.ndarray:
    """[N, 2] at 51.2 kHz -> [int(N·441/512), 2] at 44.1 kHz, by FFT resampling (float32)."""
    n_out = int(waveform.shape[0] * OUTPUT_SAMPLE_RATE / PIPELINE_SAMPLE_RATE)
    return scipy.signal.resample(waveform, n_out, axis=0).astype(np.float32)


class AudioVAE(nn.Module):
    def __init__(self, encoder: OobleckConfig, decoder: OobleckConfig):
        super().__init__()
        self.encoder = OobleckEncoder(encoder)
        self.decoder = OobleckDecoder(decoder)
        self.hop = math.prod(decoder.strides)                   # samples per latent frame (2048)
        self.latent_dim = decoder.latent_dim                    # 64

    @classmethod
    def from_pretransform_config(cls, config: dict) -> "AudioVAE":
        """From `model.pretransform.config` of SAO's `model_config.json` (an autoencoder with a VAE bottleneck)."""
        if config["bottleneck"]["type"] != "vae":
            raise ValueError(f"audio VAE: unsupported bottleneck {config['bottleneck']['type']!r}")
        return cls(OobleckConfig.from_dict(config["encoder"]["config"]),
                   OobleckConfig.from_dict(config["decoder"]["config"]))

    @staticmethod
    def _batched(x: torch.Tensor) -> torch.Tensor:
        """The pipeline passes unbatched [C, N]; the original's broadcasting turns them into [1, C, N]."""
        return x.unsqueeze(0) if x.dim() == 2 else x

    @torch.no_grad()
    def encode(self, waveform: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Stereo [2, N] or [B, 2, N] -> sampled latent [B, 64, N/2048] = mean + (softplus(scale)+1e-4)·ε.

        ε comes from `generator` (drawn on its device, then moved) or else from the global RNG, as the original's.
        """
        mean, scale = self.encoder(self._batched(waveform)).chunk(2, dim=1)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype,
                            device=generator.device if generator is not None else mean.device).to(mean.device)
        return noise * (F.softplus(scale) + 1e-4) + mean

    @torch.no_grad()
    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """[64, Na] or [B, 64, Na] -> waveform [B, 2, Na·2048] at 51.2 kHz."""
        return self.decoder(self._batched(latent))

    def decode(self, latent: torch.Tensor) -> np.ndarray:
        """The pipeline's audio decode: DiT-space latent [1, Na, 64] -> float32 [int(Na·2048·441/512), 2], 44.1 kHz."""
        waveform = self.decode_latent(latent[0].T.float())[0]  # [2, N]
        return resample_to_output_rate(waveform.T.cpu().numpy())

    def encode_audio(self, waveform: torch.Tensor, generator: torch.Generator | None = None,
                     window_seconds: float = LONG_AUDIO_WINDOW_S) -> torch.Tensor:
        """Stereo [2, N] at 51.2 kHz -> DiT-space latent [1, Na, 64] (the original's `load_audio_and_encode`).

        Up to one window (29 s) is a single encode: Na is the encoder's output length (N/2048 for whole hops).
        Longer audio is cut into windows that start every half window (in samples) until one reaches the end; each
        is zero-padded to the window, encoded on its own (one posterior draw each, in order) and the latents are
        merged with a linear cross-fade over half a window's latents; the result is cut to ⌈N·L/W⌉ latents (L
        latents per W-sample window). As in the original, the windows' sample step is half a window even when
        that is not a whole number of latents (29 s: 362.5), while the merge steps by whole latents (363).
        """
        n = waveform.shape[-1]
        window = int(window_seconds * PIPELINE_SAMPLE_RATE)
        if n <= window:
            return self.encode(waveform, generator).transpose(1, 2)
        step = int(window * (1 - LONG_AUDIO_OVERLAP))
        windows = []
        for start in range(0, n, step):
            chunk = waveform[..., start:start + window]
            windows.append(self.encode(F.pad(chunk, (0, window - chunk.shape[-1])), generator).transpose(1, 2))
            if start + window >= n:
                break
        latents_per_sample = windows[0].shape[1] / window
        return merge_overlapping_windows(windows)[:, :math.ceil(n * latents_per_sample)]


def load_reference_audio(path: str | Path, seconds: float | None = None) -> torch.Tensor:
    """An audio (or video) file as the a2v path feeds it to the encoder: stereo float32 [2, N] at 51.2 kHz.

    Like the original's `whisper.load_audio(path, sr=51200)`: the first audio stream decoded, mixed to mono and
    resampled by libswresample, quantised to 16 bits; then cut to `seconds` and duplicated to two channels.
    """
    from model.video_io import quantize_pcm16, read_audio_stream

    mono = quantize_pcm16(read_audio_stream(path, PIPELINE_SAMPLE_RATE)[0])
    if seconds is not None:
        mono = mono[:int(seconds * PIPELINE_SAMPLE_RATE)]
    return torch.from_numpy(mono).unsqueeze(0).expand(2, -1)


def load_audio_vae(model_dir: str | Path) -> AudioVAE:
    """Build from `<dir>/model_config.json` and load `pretransform.model.*` of `<dir>/model.safetensors` strictly."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    config = json.loads((model_dir / "model_config.json").read_text())
    vae = AudioVAE.from_pretransform_config(config["model"]["pretransform"]["config"])
    prefix = "pretransform.model."
    weights = {k.removeprefix(prefix): v for k, v in load_file(str(model_dir / "model.safetensors")).items()
               if k.startswith(prefix)}
    try:
        vae.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise RuntimeError(f"audio VAE: {model_dir / 'model.safetensors'} does not match: {err}") from None
    return vae.eval()
