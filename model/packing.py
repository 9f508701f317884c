"""Sequence packing for the DiT: video, audio and text → one token sequence, and velocity → latents.

Order is [video | audio | text] (modality 0, 1, 2), each block right-zero-padded to the widest block:

* video latent [1, C, T, h, w] → patches of (pt, p, p). Tokens are t-major, then y, then x. INPUT feature order
  is channel-major, `c*pt*p*p + kt*p*p + ky*p + kx` (an im2col), but the model's OUTPUT feature order is
  channel-innermost, `(kt*p*p + ky*p + kx)*C + c`. The checkpoint was trained with this asymmetry.
* audio latent [1, Na, Ca]: one token per latent frame.
* text features [1, Lpad, Ct]: only the first `text_len` rows; padding rows are never packed.

Each token gets a 9-column coordinate row (t, y, x, T, H, W, refT, refH, refW) in one of two styles: "v2" for the
base/distill model, "v1" for the SR model (they differ only for audio and text rows; see `audio_coords`,
`text_coords`). Local-attention ranges (used by the 1080p SR model) are always built.

Typical use:
    packed = pack(latent_video, latent_audio, text_embeds, text_len, coords_style="v2")
    velocity = dit(*packed.model_inputs())
    video_velocity, audio_velocity = unpack(velocity, packed)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from model.dit import AUDIO, TEXT, VIDEO

COORDS_STYLES = ("v1", "v2")


@dataclass
class PackedSequence:
    x: torch.Tensor  # [L, W] fp32, zero-padded features
    coords_mapping: torch.Tensor  # [L, 9] fp32
    modality_mapping: torch.Tensor  # [L] int64
    local_q_ranges: torch.Tensor  # [T' + 2, 2] int32, half-open token ranges
    local_k_ranges: torch.Tensor  # [T' + 2, 2] int32
    video_shape: tuple[int, ...]  # latent [1, C, T, h, w]
    audio_shape: tuple[int, ...]  # latent [1, Na, Ca]
    num_text: int
    patch_size: int
    t_patch_size: int

    @property
    def num_video(self) -> int:
        _, _, frames, height, width = self.video_shape
        return frames // self.t_patch_size * (height // self.patch_size) * (width // self.patch_size)

    @property
    def num_audio(self) -> int:
        return self.audio_shape[1]

    def model_inputs(self) -> tuple[torch.Tensor, ...]:
        """Positional arguments of `DiTModel.forward`."""
        return self.x, self.coords_mapping, self.modality_mapping, self.local_q_ranges, self.local_k_ranges


def patchify_video(latent: torch.Tensor, patch_size: int = 2, t_patch_size: int = 1) -> torch.Tensor:
    """[1, C, T, h, w] → [T'·h'·w', C·pt·p·p], features channel-major (the model's input order)."""
    _, channels, frames, height, width = latent.shape
    pt, p = t_patch_size, patch_size
    x = latent.reshape(channels, frames // pt, pt, height // p, p, width // p, p)
    x = x.permute(1, 3, 5, 0, 2, 4, 6)  # T' h' w' | C pt p p
    return x.reshape(-1, channels * pt * p * p)


def unpatchify_video(tokens: torch.Tensor, video_shape, patch_size: int = 2, t_patch_size: int = 1):
    """[T'·h'·w', pt·p·p·C] with channel-innermost features (the model's output order) → [1, C, T, h, w]."""
    _, channels, frames, height, width = video_shape
    pt, p = t_patch_size, patch_size
    x = tokens.reshape(frames // pt, height // p, width // p, pt, p, p, channels)
    x = x.permute(6, 0, 3, 1, 4, 2, 5)  # C | T' pt | h' p | w' p
    return x.reshape(1, channels, frames, height, width)


def _coords(t: torch.Tensor, size: tuple[int, int, int], ref: tuple[int, int, int], yx=None) -> torch.Tensor:
    """Rows (t, y, x, *size, *ref); y = x = 0 unless given."""
    n = len(t)
    y, x = yx if yx is not None else (torch.zeros(n), torch.zeros(n))
    constant = torch.tensor([*size, *ref], dtype=torch.float32).expand(n, 6)
    return torch.cat([torch.stack([t, y, x], dim=1).float(), constant], dim=1)


def video_coords(frames: int, height: int, width: int) -> torch.Tensor:
    """Token grid indices of a [frames, height, width] patch grid; reference size = grid size (both styles)."""
    t, y, x = torch.meshgrid(torch.arange(frames), torch.arange(height), torch.arange(width), indexing="ij")
    grid = (frames, height, width)
    return _coords(t.flatten(), grid, grid, yx=(y.flatten(), x.flatten()))


def audio_coords(num_audio: int, num_video_frames: int, style: str, vae_temporal_stride: int = 4) -> torch.Tensor:
    """Audio frame a sits at video latent time a·(refT−1)/(Na−1). v2: refT = ⌊(Na−1)/4⌋+1 (the latent frame count
    of Na pixel frames); v1: refT = the video's latent frame count. Equal whenever lengths are consistent."""
    if style == "v2":
        ref_t = (num_audio - 1) // vae_temporal_stride + 1
    else:
        ref_t = num_video_frames
    return _coords(torch.arange(num_audio), (num_audio, 1, 1), (ref_t, 1, 1))


def text_coords(num_text: int, style: str) -> torch.Tensor:
    """v2: t = n − Nt with reference size 1, so every text token gets RoPE position 0 (unless Nt = 1).
    v1: t = n with reference size 2, i.e. positions n/(Nt−1) spread over [0, 1]."""
    if style == "v2":
        return _coords(torch.arange(num_text) - num_text, (num_text, 1, 1), (1, 1, 1))
    return _coords(torch.arange(num_text), (num_text, 1, 1), (2, 1, 1))


def local_attention_ranges(num_video: int, num_frames: int, length: int, receptive_field: int):
    """(q_ranges, k_ranges) [num_frames + 2, 2] int32: each video frame's queries see video keys within
    ±receptive_field frames; all video queries also see every audio/text key; audio/text queries see everything."""
    per_frame = num_video // num_frames
    q_ranges, k_ranges = [], []
    for i in range(num_frames):
        q_ranges.append((i * per_frame, (i + 1) * per_frame))
        first, last = max(0, i - receptive_field), min(num_frames, i + receptive_field + 1)
        k_ranges.append((first * per_frame, last * per_frame))
    q_ranges += [(0, num_video), (num_video, length)]
    k_ranges += [(num_video, length), (0, length)]
    return torch.tensor(q_ranges, dtype=torch.int32), torch.tensor(k_ranges, dtype=torch.int32)


def pack_features(latent_video: torch.Tensor, latent_audio: torch.Tensor, text_embeds: torch.Tensor, num_text: int,
                  patch_size: int = 2, t_patch_size: int = 1) -> torch.Tensor:
    """Only the token features `x` [L, W] of `pack` (on the latents' device): what changes between two
    denoising steps of one clip, while coordinates, modalities and ranges stay the same."""
    blocks = [
        patchify_video(latent_video.float(), patch_size, t_patch_size),
        latent_audio[0].float(),
        text_embeds[0, :num_text].float(),
    ]
    width = max(block.shape[1] for block in blocks)
    return torch.cat([torch.nn.functional.pad(block, (0, width - block.shape[1])) for block in blocks])


def pack(
    latent_video: torch.Tensor,
    latent_audio: torch.Tensor,
    text_embeds: torch.Tensor,
    text_len: int | torch.Tensor,
    coords_style: str = "v2",
    patch_size: int = 2,
    t_patch_size: int = 1,
    frame_receptive_field: int = 11,
    vae_temporal_stride: int = 4,
) -> PackedSequence:
    """Pack a video latent [1, C, T, h, w], audio latent [1, Na, Ca] and text features [1, Lpad, Ct] (valid length
    `text_len`) into one sequence. coords_style "v2" for the base/distill model, "v1" for the SR model."""
    if coords_style not in COORDS_STYLES:
        raise ValueError(f"coords_style must be one of {COORDS_STYLES}, got {coords_style!r}")
    num_text = int(text_len)
    x = pack_features(latent_video, latent_audio, text_embeds, num_text, patch_size, t_patch_size)
    _, _, frames, height, width_lat = latent_video.shape
    grid = (frames // t_patch_size, height // patch_size, width_lat // patch_size)
    num_video, num_audio = grid[0] * grid[1] * grid[2], latent_audio.shape[1]
    counts = (num_video, num_audio, len(x) - num_video - num_audio)
    modality = torch.cat([torch.full((n,), m, dtype=torch.int64) for m, n in zip((VIDEO, AUDIO, TEXT), counts)])
    coords = torch.cat([
        video_coords(*grid),
        audio_coords(num_audio, grid[0], coords_style, vae_temporal_stride),
        text_coords(num_text, coords_style),
    ])
    q_ranges, k_ranges = local_attention_ranges(num_video, grid[0], len(x), frame_receptive_field)
    return PackedSequence(
        x=x.to(latent_video.device),
        coords_mapping=coords.to(latent_video.device),
        modality_mapping=modality.to(latent_video.device),
        local_q_ranges=q_ranges,
        local_k_ranges=k_ranges,
        video_shape=tuple(latent_video.shape),
        audio_shape=tuple(latent_audio.shape),
        num_text=num_text,
        patch_size=patch_size,
        t_patch_size=t_patch_size,
    )


def unpack(velocity: torch.Tensor, packed: PackedSequence) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed model output [L, ≥192] → (video velocity [1, C, T, h, w], audio velocity [1, Na, Ca])."""
    num_video, num_audio = packed.num_video, packed.num_audio
    video_width = packed.video_shape[1] * packed.t_patch_size * packed.patch_size**2
    video = unpatchify_video(
        velocity[:num_video, :video_width], packed.video_shape, packed.patch_size, packed.t_patch_size
    )
    audio = velocity[num_video : num_video + num_audio, : packed.audio_shape[2]]
    return video, audio.reshape(packed.audio_shape)


def inject_reference_image(latent_video: torch.Tensor, image_latent: torch.Tensor) -> torch.Tensor:
    """TI2V "unified conditioning": a copy of the video latent [1, C, T, h, w] whose latent frame 0 is replaced by
    the clean image latent [1, C, 1, h, w]. The pipeline applies it before every denoising step and after the loop."""
    latent_video = latent_video.clone()
    latent_video[:, :, :1] = image_latent
    return latent_video
