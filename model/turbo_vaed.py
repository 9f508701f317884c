"""Turbo-VAED: the light, decoder-only student of the Wan2.2 VAE decoder that the paper uses for speed (spec 5.2).

Entry points (latents in the normalised DiT space, video in [-1, 1], layout [B, 3, F, H, W]):

    vaed = load_turbo_vaed("TurboV3-Wan22-TinyShallow_7_7.json", "turbo_vaed.pt")   # reads ckpt["ema_state_dict"]
    video = vaed.decode(latent)          # [B,48,T,h,w] -> [B,3,1+4(T-1),16h,16w], not clamped

Unlike Wan2.2 the decoder is non-causal: time convolutions see both neighbours (the clip edges are replicated),
so a long latent is decoded in overlapping windows (`first_chunk_size`, then `step_size` latents, one latent of
context on each side) whose overlapping output frames are dropped.
"""

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.conv import conv3d
from model.wan_vae import channel_halves_to_frames, latent_statistics, read_state_dict, unpatchify


@dataclass
class TurboVAEDConfig:
    """Keys of the released `TurboV3-Wan22-TinyShallow_7_7.json`. Lists run shallow -> deep, as in the JSON."""

    latent_channels: int = 48
    out_channels: int = 3
    decoder_block_out_channels: tuple[int, ...] = (64, 128, 256, 512)
    decoder_layers_per_block: tuple[int, ...] = (2, 2, 2, 3, 3)
    decoder_spatio_temporal_scaling: tuple[bool, ...] = (False, True, True, True)
    decoder_spatio_only: tuple[bool, ...] = (False, True, False, False)
    decoder_is_dw_conv: tuple[bool, ...] = (False, False, False, False, False)
    decoder_causal: bool = False
    patch_size: int = 2
    use_unpatchify: bool = True
    first_chunk_size: int = 7
    step_size: int = 7
    spatial_compression_ratio: int = 16
    temporal_compression_ratio: int = 4
    dropout: float = 0.0

    @classmethod
    def from_dict(cls, config: dict) -> "TurboVAEDConfig":
        """Unknown keys are ignored, as diffusers' `from_config` does."""
        known = {f.name for f in fields(cls)}
        cfg = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in known})
        cfg.check_supported()
        return cfg

    def check_supported(self):
        """The released checkpoint's variant; the original's causal, depth-wise and pixel-shuffle options differ."""
        if self.decoder_causal or any(self.decoder_is_dw_conv) or not self.use_unpatchify or self.patch_size != 2:
            raise ValueError("Turbo-VAED: only the released variant is implemented (decoder_causal=False, no "
                             "depth-wise convs, use_unpatchify=True, patch_size=2); got " + repr(self))


class TurboVAEDCausalConv3d(nn.Module):
    """Despite the original name, non-causal: time is padded by replicating the edge frames, space with zeros."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3):
        super().__init__()
        k_t, k_h, k_w = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
        self.time_padding = (k_t - 1) // 2
        self.conv = nn.Conv3d(in_channels, out_channels, (k_t, k_h, k_w), padding=(0, k_h // 2, k_w // 2))

    def forward(self, x):                                       # [B, C, T, H, W] -> [B, C_out, T, H, W]
        if self.time_padding:   # = F.pad(mode="replicate"), which is slower, several times on channels-last data
            edge = (-1, -1, self.time_padding, -1, -1)
            x = torch.cat([x[:, :, :1].expand(edge), x, x[:, :, -1:].expand(edge)], dim=2)
        return conv3d(x, self.conv.weight, self.conv.bias, padding=self.conv.padding)


class RMSNorm(nn.Module):
    """Parameter-free RMS normalisation over the channel dim, computed in float32."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        # mean(x²) as ‖x‖²/C: one pass over x, without materialising x² (the norms run on the largest tensors)
        mean_square = torch.linalg.vector_norm(x32, dim=1, keepdim=True).square_().div_(x.shape[1])
        return (x32 * mean_square.add_(self.eps).rsqrt_()).to(x.dtype)


class TurboVAEDResnetBlock3d(nn.Module):
    """norm → act → conv1 → norm → SiLU → dropout → conv2, plus a (norm → 1×1×1 conv) shortcut when in ≠ out."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0, relu_first: bool = False):
        super().__init__()
        self.norm1 = RMSNorm(eps=1e-8)
        # the activations run in place on the norms' fresh outputs
        self.act1 = nn.ReLU(inplace=True) if relu_first else nn.SiLU(inplace=True)
        self.conv1 = TurboVAEDCausalConv3d(in_channels, out_channels)
        self.norm2 = RMSNorm(eps=1e-8)
        self.act2 = nn.SiLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = TurboVAEDCausalConv3d(out_channels, out_channels)
        if in_channels != out_channels:
            self.norm3 = RMSNorm(eps=1e-6)
            self.conv_shortcut = TurboVAEDCausalConv3d(in_channels, out_channels, kernel_size=1)
        else:
            self.conv_shortcut = None

    def forward(self, x):
        h = self.conv1(self.act1(self.norm1(x)))
        h = self.conv2(self.dropout(self.act2(self.norm2(h))))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(self.norm3(x))
        return h.add_(shortcut)


class WanResample(nn.Module):
    """×2 nearest-exact spatial upsampling + 3×3 conv per frame; "upsample3d" first doubles the frame count."""

    def __init__(self, dim: int, mode: str):
        super().__init__()
        self.resample = nn.Sequential(nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                                      nn.Conv2d(dim, dim, 3, padding=1))
        self.time_conv = TurboVAEDCausalConv3d(dim, 2 * dim, (3, 1, 1)) if mode == "upsample3d" else None

    def forward(self, x, is_first_chunk: bool):
        if self.time_conv is not None:
            x = channel_halves_to_frames(self.time_conv(x))
            if is_first_chunk:                       # the first latent frame stands for a single video frame
                x = x[:, :, 1:]
        # the per-frame 2-D layers as 3-D ones with a time extent of 1: no frames ↔ batch copies
        upsample, conv = self.resample
        x = F.interpolate(x, scale_factor=(1.0, *upsample.scale_factor), mode=upsample.mode)
        return conv3d(x, conv.weight.unsqueeze(2), conv.bias, padding=(0, *conv.padding))


class TurboVAEDMidBlock3d(nn.Module):
    def __init__(self, channels: int, num_layers: int, dropout: float):
        super().__init__()
        self.resnets = nn.ModuleList(TurboVAEDResnetBlock3d(channels, channels, dropout) for _ in range(num_layers))

    def forward(self, x):
        for resnet in self.resnets:
            x = resnet(x)
        return x


class TurboVAEDUpBlock3d(nn.Module):
    """[conv_in ResNet when in ≠ out] → [upsampler] → ResNets (ReLU-first when the block upsamples)."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, upsample_mode: str | None,
                 dropout: float):
        super().__init__()
        self.conv_in = TurboVAEDResnetBlock3d(in_channels, out_channels, dropout) if in_channels != out_channels else None
        self.upsamplers = nn.ModuleList([WanResample(out_channels, upsample_mode)]) if upsample_mode else None
        self.resnets = nn.ModuleList(
            TurboVAEDResnetBlock3d(out_channels, out_channels, dropout, relu_first=upsample_mode is not None)
            for _ in range(num_layers))

    def forward(self, x, is_first_chunk: bool):
        if self.conv_in is not None:
            x = self.conv_in(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, is_first_chunk)
        for resnet in self.resnets:
            x = resnet(x)
        return x


class TurboVAEDDecoder3d(nn.Module):
    """Denormalised latent [B,48,T,h,w] -> video [B,3,4T (−3 on the first chunk),16h,16w]."""

    def __init__(self, cfg: TurboVAEDConfig):
        super().__init__()
        channels = cfg.decoder_block_out_channels[::-1]          # deep -> shallow
        layers = cfg.decoder_layers_per_block[::-1]
        scaling = cfg.decoder_spatio_temporal_scaling[::-1]
        spatial_only = cfg.decoder_spatio_only[::-1]
        self.patch_size = cfg.patch_size
        self.conv_in = TurboVAEDCausalConv3d(cfg.latent_channels, channels[0])
        self.mid_block = TurboVAEDMidBlock3d(channels[0], layers[0], cfg.dropout)
        in_channels = (channels[0],) + channels[:-1]
        self.up_blocks = nn.ModuleList(
            TurboVAEDUpBlock3d(in_channels[i], channels[i], layers[i + 1],
                               ("upsample2d" if spatial_only[i] else "upsample3d") if scaling[i] else None,
                               cfg.dropout)
            for i in range(len(channels)))
        self.norm_out = RMSNorm(eps=1e-8)
        self.conv_act = nn.SiLU(inplace=True)
        self.conv_out = TurboVAEDCausalConv3d(channels[-1], cfg.out_channels * cfg.patch_size ** 2)

    def forward(self, z, is_first_chunk: bool):
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x, is_first_chunk)
        return unpatchify(self.conv_out(self.conv_act(self.norm_out(x))), self.patch_size)


class TurboVAED(nn.Module):
    def __init__(self, cfg: TurboVAEDConfig = TurboVAEDConfig()):
        super().__init__()
        cfg.check_supported()
        self.cfg = cfg
        self.decoder = TurboVAEDDecoder3d(cfg)
        self.channels_last = False   # decode in NDHWC layout (model.fastpath.fast_turbo_vaed sets it)

    def to_channels_last(self) -> "TurboVAED":
        """3-D convolution weights and the decoded activations in channels-last (NDHWC) layout, in place."""
        for param in self.parameters():
            if param.dim() == 5:
                param.data = param.data.contiguous(memory_format=torch.channels_last_3d)
        self.channels_last = True
        return self

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.conv_in.conv.weight.dtype

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """DiT-space latent -> decoder input z·std + mean (Wan2.2 statistics), computed in float32 and cast to the
        model dtype (a bf16 model then stays closest to the original's bf16 output)."""
        mean, inv_std = latent_statistics(torch.float32, z.device)
        return (z.float() / inv_std + mean).to(self.dtype)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, output_device: torch.device | None = None) -> torch.Tensor:
        """Sliding-window decode of a normalised latent [B,48,T,h,w] -> [B,3,1+4(T−1),16h,16w] (model dtype).

        `output_device` collects the decoded windows elsewhere (e.g. on the CPU) to bound accelerator memory.
        """
        first, step, r = self.cfg.first_chunk_size, self.cfg.step_size, self.cfg.temporal_compression_ratio
        z = self.denormalize(latent)
        t = z.shape[2]
        pad = first - t if t <= first else -(t - first) % step       # -> T = first + n·step
        z = torch.cat([z, z[:, :, -1:].expand(-1, -1, pad, -1, -1)], dim=2)
        if self.channels_last:
            z = z.contiguous(memory_format=torch.channels_last_3d)
        t += pad
        if t == first:
            windows = [self.decoder(z, is_first_chunk=True)]
        else:
            # one latent of context past each window edge; its 4 output frames are dropped
            windows = [self.decoder(z[:, :, :first + 1], is_first_chunk=True)[:, :, :-r]]
            for start in range(first, t, step):
                is_last = start + step >= t
                out = self.decoder(z[:, :, start - 1:start + step + (0 if is_last else 1)], is_first_chunk=False)
                windows.append(out[:, :, r:] if is_last else out[:, :, r:-r])
        video = torch.cat([w.to(output_device) for w in windows], dim=2)
        return video[:, :, :video.shape[2] - r * pad]


# ---------------------------------------------------------------------------------------------------------------
# Loading


def load_ema_weights(vaed: TurboVAED, checkpoint: dict) -> None:
    """Load `checkpoint["ema_state_dict"]` (keys may carry DDP's `module.` prefix) by the original key names.

    Training-only extras in the EMA dict (e.g. feature-alignment heads) are ignored; every decoder parameter
    must be present with the right shape.
    """
    if "ema_state_dict" not in checkpoint:
        raise KeyError(f"Turbo-VAED checkpoint has no 'ema_state_dict' (keys: {sorted(checkpoint)[:10]})")
    weights = {k.removeprefix("module."): v for k, v in checkpoint["ema_state_dict"].items()}
    has_prefix = any(k.startswith(("decoder.", "encoder.")) for k in weights)
    target = vaed if has_prefix else vaed.decoder
    missing, _ = target.load_state_dict(weights, strict=False)
    if missing:
        raise RuntimeError(f"Turbo-VAED checkpoint lacks {len(missing)} decoder parameters: {missing}")


def load_turbo_vaed(config: dict | str | Path, checkpoint: str | Path,
                    dtype: torch.dtype = torch.float32) -> TurboVAED:
    """Build from a config dict or JSON file and load the EMA weights of a `torch.save`d checkpoint."""
    if not isinstance(config, dict):
        config = json.loads(Path(config).read_text())
    vaed = TurboVAED(TurboVAEDConfig.from_dict(config))
    load_ema_weights(vaed, read_state_dict(checkpoint))
    return vaed.to(dtype).eval()
