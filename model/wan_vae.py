"""Wan2.2 VAE: the 48-channel high-compression video VAE (spec 5.1, Appendix B).

Entry points (video in [-1, 1], layout [B, 3, F, H, W]; latents in the normalised DiT space):

    vae = load_wan_vae("Wan2.2_VAE.pth")          # strict load, original key names
    latent = vae.encode(image)                     # [B,3,F,H,W] -> [B,48,1+(F-1)//4,H/16,W/16], F = 1 for TI2V
    video = vae.decode(latent)                     # [48,T,h,w] or [B,48,T,h,w] -> [B,3,1+4(T-1),16h,16w] in [-1,1]
    video = vae.decode(latent, group)              # the same, the width split over a context-parallel group

Compression is 4x in time (causal: F = 1 + 4(T-1)) and 16x in space (a pixel (un)shuffle by 2 plus three
conv stages). Encoding runs on frame 0 alone, then on chunks of 4 frames; decoding runs one latent frame at a
time. Causal convolutions carry the last frames of the previous chunk in a cache, so chunked processing gives
the same result as a single pass while keeping memory bounded.
"""

from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from model.conv import conv3d
from model.parallel import in_width_slices

# Per-channel statistics of the 48-channel latent (Appendix B): z = (mu - mean) / std.
WAN22_LATENT_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891, 0.1570,
    -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502, -0.2055, -0.0322,
    0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520,
    0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)
WAN22_LATENT_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165,
    0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659, 0.7069, 0.5338, 0.4889, 0.4917,
    0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600,
    0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)

PATCH_SIZE = 2


@dataclass
class WanVAEConfig:
    """Released Wan2.2 widths (`Wan2_2_VAE(z_dim=48, c_dim=160, dim_mult=[1,2,4,4], temperal_downsample=[F,T,T])`)."""

    dim: int = 160                  # encoder base width
    dec_dim: int = 256              # decoder base width
    z_dim: int = 48
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2         # per down stage; up stages use one more
    temperal_downsample: tuple[bool, ...] = (False, True, True)
    dropout: float = 0.0

    @classmethod
    def from_dict(cls, config: dict) -> "WanVAEConfig":
        """Build from a config dict such as a fixture sidecar's; keys this structure does not use are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in known}
        return cls(**values)

    @property
    def temporal_compression(self) -> int:
        return 2 ** sum(self.temperal_downsample)


def latent_statistics(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, 1/std) shaped [1, 48, 1, 1, 1], in the dtype the model runs in (as the original keeps them)."""
    mean = torch.tensor(WAN22_LATENT_MEAN, dtype=dtype, device=device).view(1, -1, 1, 1, 1)
    std = torch.tensor(WAN22_LATENT_STD, dtype=dtype, device=device).view(1, -1, 1, 1, 1)
    return mean, 1.0 / std


def patchify(x: torch.Tensor, p: int = PATCH_SIZE) -> torch.Tensor:
    """[B, C, F, H, W] -> [B, C·p·p, F, H/p, W/p], channel index c·p² + wx·p + hy."""
    b, c, f, hp, wp = x.shape
    x = x.view(b, c, f, hp // p, p, wp // p, p)                # b c f h hy w wx
    return x.permute(0, 1, 6, 4, 2, 3, 5).reshape(b, c * p * p, f, hp // p, wp // p)


def unpatchify(x: torch.Tensor, p: int = PATCH_SIZE) -> torch.Tensor:
    """Inverse of `patchify`: [B, C·p·p, F, h, w] -> [B, C, F, h·p, w·p]."""
    b, cpp, f, h, w = x.shape
    x = x.view(b, cpp // (p * p), p, p, f, h, w)                # b c wx hy f h w
    return x.permute(0, 1, 4, 5, 3, 6, 2).reshape(b, cpp // (p * p), f, h * p, w * p)


def channel_halves_to_frames(x: torch.Tensor) -> torch.Tensor:
    """[B, 2C, T, H, W] -> [B, C, 2T, H, W]: frame 2t takes the first channel half of t, frame 2t+1 the second."""
    b, c2, t, h, w = x.shape
    return x.view(b, 2, c2 // 2, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c2 // 2, 2 * t, h, w)


def per_frame(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D layer to every frame of [B, C, T, H, W]."""
    b, _, t = x.shape[:3]
    y = layer(x.transpose(1, 2).flatten(0, 1))
    return y.unflatten(0, (b, t)).transpose(1, 2)


# ---------------------------------------------------------------------------------------------------------------
# Building blocks


class CausalConv3d(nn.Conv3d):
    """Conv3d that sees only the current and earlier frames: time is padded with 2·p_t frames on the left.

    With `time_context` > 0 the left context comes from `cache`, the last input frames of the previous chunk
    (zeros at the start of the stream), so processing a clip chunk by chunk equals one pass over the whole clip.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        p_t, p_h, p_w = (padding,) * 3 if isinstance(padding, int) else padding
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=(0, p_h, p_w))
        self.time_context = 2 * p_t
        self.cache: torch.Tensor | None = None

    def forward(self, x):
        if self.time_context:
            if self.cache is None:
                self.cache = x.new_zeros(*x.shape[:2], self.time_context, *x.shape[3:])
            x = torch.cat([self.cache, x], dim=2)
            self.cache = x[:, :, -self.time_context:].clone()
        return conv3d(x, self.weight, self.bias, self.stride, self.padding)


class RMS_norm(nn.Module):
    """L2-normalise over channels, rescale by √C·γ. γ is (C,1,1,1) for video, (C,1,1) for per-frame images."""

    def __init__(self, dim: int, images: bool = True):
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(dim, *((1, 1) if images else (1, 1, 1))))

    def forward(self, x):
        return F.normalize(x, dim=1) * self.scale * self.gamma


class ResidualBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.residual = nn.Sequential(
            RMS_norm(in_dim, images=False), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMS_norm(out_dim, images=False), nn.SiLU(), nn.Dropout(dropout), CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x):
        return self.shortcut(x) + self.residual(x)


class AttentionBlock(nn.Module):
    """Single-head self-attention over the H·W positions of each frame."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMS_norm(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def attend(self, x):                                        # [N, C, H, W] frames
        n, c, h, w = x.shape
        q, k, v = self.to_qkv(self.norm(x)).view(n, 1, 3 * c, h * w).transpose(2, 3).chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v)           # [N, 1, H·W, C]
        return self.proj(out.squeeze(1).transpose(1, 2).reshape(n, c, h, w))

    def forward(self, x):
        return x + per_frame(self.attend, x)


class Resample(nn.Module):
    """×2 spatial up/down-sampling per frame, plus ×2 in time for the "3d" modes.

    upsample3d: `time_conv` makes 2C channels whose halves become two consecutive frames; it is skipped on the
    first chunk, which is what makes F = 1 + 4(T-1). downsample3d: a stride-2 causal time conv over the previous
    chunk's last frame and the current chunk; the first chunk (frame 0) passes through.
    """

    def __init__(self, dim: int, mode: str):
        super().__init__()
        self.mode = mode
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                                          nn.Conv2d(dim, dim, 3, padding=1))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))
        self.cache: torch.Tensor | None = None                  # downsample3d: last frame of the previous chunk

    def forward(self, x, first_chunk: bool):
        if self.mode == "upsample3d" and not first_chunk:
            x = channel_halves_to_frames(self.time_conv(x))
        x = per_frame(self.resample, x)
        if self.mode == "downsample3d":
            last_frame = x[:, :, -1:].clone()
            if not first_chunk:
                x = self.time_conv(torch.cat([self.cache, x], dim=2))
            self.cache = last_frame
        return x


class AvgDown3D(nn.Module):
    """Parameter-free shortcut of a down block: fold time/space into channels, then average channel groups."""

    def __init__(self, in_channels: int, out_channels: int, factor_t: int, factor_s: int):
        super().__init__()
        self.out_channels, self.factor_t, self.factor_s = out_channels, factor_t, factor_s
        self.group_size = in_channels * factor_t * factor_s * factor_s // out_channels

    def forward(self, x):
        ft, fs = self.factor_t, self.factor_s
        x = F.pad(x, (0, 0, 0, 0, (-x.shape[2]) % ft, 0))       # causal: pad time at the front
        b, c, t, h, w = x.shape
        x = x.view(b, c, t // ft, ft, h // fs, fs, w // fs, fs).permute(0, 1, 3, 5, 7, 2, 4, 6)
        x = x.reshape(b, self.out_channels, self.group_size, t // ft, h // fs, w // fs)
        return x.mean(dim=2)


class DupUp3D(nn.Module):
    """Parameter-free shortcut of an up block: repeat channels, then unfold them into time/space."""

    def __init__(self, in_channels: int, out_channels: int, factor_t: int, factor_s: int):
        super().__init__()
        self.out_channels, self.factor_t, self.factor_s = out_channels, factor_t, factor_s
        self.repeats = out_channels * factor_t * factor_s * factor_s // in_channels

    def forward(self, x, first_chunk: bool):
        ft, fs = self.factor_t, self.factor_s
        b, _, t, h, w = x.shape
        x = x.repeat_interleave(self.repeats, dim=1).view(b, self.out_channels, ft, fs, fs, t, h, w)
        x = x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, self.out_channels, t * ft, h * fs, w * fs)
        return x[:, :, ft - 1:] if first_chunk else x


# Context-parallel decode (spec 5.1): columns of real neighbours each width slice needs, as the original sets them
RESIDUAL_HALO = 2          # two 3×3 convolutions
UPSAMPLE_HALO = 1          # one 3×3 convolution after the ×2 upsample (2 output columns)
CONV_HALO = 1              # the first conv and the head's conv (3×3, stride 1)


def run_stage(layers: nn.Sequential, x: torch.Tensor, first_chunk: bool,
              group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """Residual blocks and a resampler; with a CP `group` (decoder only) each runs on width slices."""
    for layer in layers:
        if isinstance(layer, Resample):
            x = in_width_slices(partial(layer, first_chunk=first_chunk), x, group, UPSAMPLE_HALO, scale=2)
        else:
            x = in_width_slices(layer, x, group, RESIDUAL_HALO)
    return x


class Down_ResidualBlock(nn.Module):
    def __init__(self, in_dim, out_dim, dropout, mult, temperal_downsample: bool, down_flag: bool):
        super().__init__()
        self.avg_shortcut = AvgDown3D(in_dim, out_dim, 2 if temperal_downsample else 1, 2 if down_flag else 1)
        blocks = [ResidualBlock(in_dim if i == 0 else out_dim, out_dim, dropout) for i in range(mult)]
        if down_flag:
            blocks.append(Resample(out_dim, "downsample3d" if temperal_downsample else "downsample2d"))
        self.downsamples = nn.Sequential(*blocks)

    def forward(self, x, first_chunk: bool):
        return run_stage(self.downsamples, x, first_chunk) + self.avg_shortcut(x)


class Up_ResidualBlock(nn.Module):
    def __init__(self, in_dim, out_dim, dropout, mult, temperal_upsample: bool, up_flag: bool):
        super().__init__()
        self.avg_shortcut = DupUp3D(in_dim, out_dim, 2 if temperal_upsample else 1, 2) if up_flag else None
        blocks = [ResidualBlock(in_dim if i == 0 else out_dim, out_dim, dropout) for i in range(mult)]
        if up_flag:
            blocks.append(Resample(out_dim, "upsample3d" if temperal_upsample else "upsample2d"))
        self.upsamples = nn.Sequential(*blocks)

    def forward(self, x, first_chunk: bool, group: dist.ProcessGroup | None = None):
        out = run_stage(self.upsamples, x, first_chunk, group)
        return out if self.avg_shortcut is None else out + self.avg_shortcut(x, first_chunk)


def middle_stage(dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(ResidualBlock(dim, dim, dropout), AttentionBlock(dim), ResidualBlock(dim, dim, dropout))


def head(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(RMS_norm(in_dim, images=False), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1))


class Encoder3d(nn.Module):
    """Patchified video [B,12,F,H/2,W/2] -> [B, 2·z, T, H/16, W/16] (mean ‖ log-variance)."""

    def __init__(self, cfg: WanVAEConfig):
        super().__init__()
        dims = [cfg.dim * m for m in (1, *cfg.dim_mult)]        # released: 160,160,320,640,640
        n_stages = len(cfg.dim_mult)
        self.conv1 = CausalConv3d(3 * PATCH_SIZE ** 2, dims[0], 3, padding=1)
        self.downsamples = nn.Sequential(*(
            Down_ResidualBlock(dims[i], dims[i + 1], cfg.dropout, cfg.num_res_blocks,
                               temperal_downsample=i < len(cfg.temperal_downsample) and cfg.temperal_downsample[i],
                               down_flag=i != n_stages - 1)
            for i in range(n_stages)))
        self.middle = middle_stage(dims[-1], cfg.dropout)
        self.head = head(dims[-1], 2 * cfg.z_dim)

    def forward(self, x, first_chunk: bool):
        x = self.conv1(x)
        for stage in self.downsamples:
            x = stage(x, first_chunk)
        return self.head(self.middle(x))


class Decoder3d(nn.Module):
    """Denormalised latent [B, z, 1, h, w] (one frame) -> patchified video [B, 12, 1 or 4, 8h, 8w]."""

    def __init__(self, cfg: WanVAEConfig):
        super().__init__()
        mults = cfg.dim_mult[::-1]
        dims = [cfg.dec_dim * m for m in (mults[0], *mults)]     # released: 1024,1024,1024,512,256
        temperal_upsample = cfg.temperal_downsample[::-1]
        n_stages = len(cfg.dim_mult)
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = middle_stage(dims[0], cfg.dropout)
        self.upsamples = nn.Sequential(*(
            Up_ResidualBlock(dims[i], dims[i + 1], cfg.dropout, cfg.num_res_blocks + 1,
                             temperal_upsample=i < len(temperal_upsample) and temperal_upsample[i],
                             up_flag=i != n_stages - 1)
            for i in range(n_stages)))
        self.head = head(dims[-1], 3 * PATCH_SIZE ** 2)

    def forward(self, x, first_chunk: bool, group: dist.ProcessGroup | None = None):
        """With a CP `group`, every block but the attention (a whole-frame operation, run in full on every rank)
        works on width slices."""
        x = in_width_slices(self.conv1, x, group, CONV_HALO)
        for layer in self.middle:
            x = layer(x) if isinstance(layer, AttentionBlock) else in_width_slices(layer, x, group, RESIDUAL_HALO)
        for stage in self.upsamples:
            x = stage(x, first_chunk, group)
        return in_width_slices(self.head, x, group, CONV_HALO)


# ---------------------------------------------------------------------------------------------------------------
# The VAE (state-dict layout of the original `WanVAE_`: encoder.*, conv1.*, conv2.*, decoder.*)


class WanVAE(nn.Module):
    def __init__(self, cfg: WanVAEConfig = WanVAEConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder3d(cfg)
        self.conv1 = CausalConv3d(2 * cfg.z_dim, 2 * cfg.z_dim, 1)
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = Decoder3d(cfg)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv2.weight.dtype

    def clear_cache(self):
        for m in self.modules():
            if isinstance(m, (CausalConv3d, Resample)):
                m.cache = None

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """[B,3,F,H,W] in [-1,1] -> normalised latent mean (μ−mean)/std, float32 [B, z, 1+(F-1)//4, H/16, W/16]."""
        x = patchify(video.to(self.dtype))
        stride = self.cfg.temporal_compression
        chunks = [x[:, :, :1]] + [x[:, :, 1 + stride * i: 1 + stride * (i + 1)]
                                  for i in range((x.shape[2] - 1) // stride)]
        self.clear_cache()
        features = torch.cat([self.encoder(chunk, first_chunk=i == 0) for i, chunk in enumerate(chunks)], dim=2)
        self.clear_cache()
        mu = self.conv1(features)[:, :self.cfg.z_dim]           # the log-variance half is unused
        mean, inv_std = latent_statistics(mu.dtype, mu.device)
        return ((mu - mean) * inv_std).float()

    @torch.no_grad()
    def decode_raw(self, latent: torch.Tensor, group: dist.ProcessGroup | None = None) -> torch.Tensor:
        """Normalised latent [B,z,T,h,w] -> unclamped video [B,3,1+4(T-1),16h,16w] in the model dtype.

        `group`: context parallel, every rank of the group calls this with the same latent and gets the whole
        video; the decoder's blocks split the width between them (see `Decoder3d.forward`).
        """
        mean, inv_std = latent_statistics(self.dtype, latent.device)
        x = self.conv2(latent.to(self.dtype) / inv_std + mean)
        self.clear_cache()
        frames = [self.decoder(x[:, :, t:t + 1], first_chunk=t == 0, group=group) for t in range(x.shape[2])]
        self.clear_cache()
        return unpatchify(torch.cat(frames, dim=2))

    def decode(self, latent: torch.Tensor, group: dist.ProcessGroup | None = None) -> torch.Tensor:
        """The pipeline's fallback decoder: [z,T,h,w] (batch squeezed) or [B,z,T,h,w] -> float32 video in [-1,1]."""
        if latent.dim() == 4:
            latent = latent.unsqueeze(0)
        return self.decode_raw(latent, group).float().clamp(-1, 1)


# ---------------------------------------------------------------------------------------------------------------
# Loading


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file or a `torch.save`d dict (weights only), keys unchanged."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def load_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], source: str, assign: bool = False):
    """`load_state_dict(strict=True)` whose error names the checkpoint and lists the offending keys."""
    try:
        module.load_state_dict(state_dict, strict=True, assign=assign)
    except RuntimeError as err:
        raise RuntimeError(f"{type(module).__name__}: checkpoint {source} does not match: {err}") from None


def load_wan_vae(path: str | Path, cfg: WanVAEConfig = WanVAEConfig(),
                 dtype: torch.dtype = torch.float32) -> WanVAE:
    """Build on the meta device and assign the checkpoint's tensors (strict), as the original loader does."""
    with torch.device("meta"):
        vae = WanVAE(cfg)
    load_strict(vae, read_state_dict(path), str(path), assign=True)
    return vae.to(dtype).eval()
