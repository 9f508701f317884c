"""Sizes of one generation, derived in this one place (spec 3.1, 3.4, 4.7): the pipeline, the sampling loops and
the memory estimate of `python -m model.sizing` all read them from `LatentShape`.

    shape = LatentShape.for_request(seconds=4, width=448, height=256)   # T2V / TI2V
    shape.audio_frames, shape.frames, shape.pixel_frames   # Na = 25s+1 = 101, T = ⌊(Na−1)/4⌋+1 = 26, F = 101
    shape.height, shape.width                              # latent sides ⌊pixels/16/2⌋·2 = 16, 28
    shape.video_tokens                                     # T·(h/2)·(w/2) = 2912 DiT tokens
    LatentShape.for_audio(audio_frames=76, width=448, height=256)       # a2v: the video follows the audio
"""
from __future__ import annotations

from dataclasses import dataclass

VIDEO_LATENT_CHANNELS = 48
AUDIO_LATENT_CHANNELS = 64
AUDIO_LATENTS_PER_SECOND = 25        # 51.2 kHz audio / 2048-sample hop
VIDEO_FRAMES_PER_LATENT = 4          # VAE temporal stride: F = 4(T−1)+1
PIXELS_PER_LATENT = 16               # VAE spatial stride
PATCH_SIZE = 2                       # DiT spatial patch (1×2×2): latent sides are even


def latent_side(pixels: int) -> int:
    """Latent size of a pixel side: ⌊pixels/16/2⌋·2 (pixel sides round down to multiples of 32)."""
    return pixels // PIXELS_PER_LATENT // PATCH_SIZE * PATCH_SIZE


@dataclass(frozen=True)
class LatentShape:
    """T latent frames of h×w (video) and Na audio latents."""

    frames: int
    height: int
    width: int
    audio_frames: int

    @classmethod
    def for_audio(cls, audio_frames: int, width: int, height: int) -> "LatentShape":
        """Video length follows the audio: T = ⌊(Na−1)/4⌋+1."""
        return cls((audio_frames - 1) // VIDEO_FRAMES_PER_LATENT + 1, latent_side(height), latent_side(width),
                   audio_frames)

    @classmethod
    def for_request(cls, seconds: int, width: int, height: int) -> "LatentShape":
        """A clip of whole seconds: Na = 25·s + 1."""
        return cls.for_audio(AUDIO_LATENTS_PER_SECOND * seconds + 1, width, height)

    @property
    def pixel_frames(self) -> int:
        return VIDEO_FRAMES_PER_LATENT * (self.frames - 1) + 1

    @property
    def pixel_size(self) -> tuple[int, int]:
        """(width, height) in pixels actually generated."""
        return PIXELS_PER_LATENT * self.width, PIXELS_PER_LATENT * self.height

    @property
    def video_tokens(self) -> int:
        return self.frames * (self.height // PATCH_SIZE) * (self.width // PATCH_SIZE)

    @property
    def video(self) -> tuple[int, ...]:
        return (1, VIDEO_LATENT_CHANNELS, self.frames, self.height, self.width)

    @property
    def audio(self) -> tuple[int, ...]:
        return (1, self.audio_frames, AUDIO_LATENT_CHANNELS)
