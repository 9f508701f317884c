"""Writing the generated clip: H.264 video and AAC audio in one mp4, through PyAV (no ffmpeg program).

The original writes the frames with imageio (libx264), the audio as a 16-bit WAV, and muxes both with
`ffmpeg -c:v copy -c:a aac` without `-shortest`, so the audio track keeps its own length (spec 4.6). Here both
streams are encoded in one pass; the audio is quantised to 16 bits first so AAC sees the same samples.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

AAC_BIT_RATE = 192_000
H264_OPTIONS = {"preset": "veryfast", "crf": "18"}   # as mheval.media; "medium" took 3x longer (1.7 s for 5 s of 448x256)


def write_clip(path: str | Path, frames: np.ndarray, fps: int, audio: np.ndarray, sample_rate: int) -> None:
    """frames uint8 RGB [F, H, W, 3] (even H and W); audio float [N, C] in [-1, 1], C = 1 or 2.

    Written to a temporary name and renamed, so a crash never leaves a half-written clip at `path`.
    """
    path = Path(path)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [F, H, W, 3], got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 (yuv420p) needs even frame sizes, got {width}x{height}")
    if audio.ndim != 2 or audio.shape[1] not in (1, 2):
        raise ValueError(f"audio must be [N, 1|2], got {audio.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial.mp4")
    with av.open(str(partial), mode="w", format="mp4") as container:
        video_stream = container.add_stream("libx264", rate=Fraction(fps))
        video_stream.width, video_stream.height, video_stream.pix_fmt = width, height, "yuv420p"
        video_stream.options = dict(H264_OPTIONS)
        audio_stream = container.add_stream("aac", rate=sample_rate)
        audio_stream.layout = "stereo" if audio.shape[1] == 2 else "mono"
        audio_stream.bit_rate = AAC_BIT_RATE
        for image in frames:
            container.mux(video_stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), "rgb24")))
        container.mux(video_stream.encode(None))
        _encode_audio(container, audio_stream, quantize_pcm16(audio), sample_rate)
    os.replace(partial, path)


def quantize_pcm16(audio: np.ndarray) -> np.ndarray:
    """What a 16-bit WAV round trip keeps: clipped to [-1, 1), rounded to multiples of 1/32768."""
    return (np.clip(np.round(audio * 32768.0), -32768, 32767) / 32768.0).astype(np.float32)


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int) -> None:
    planar = np.ascontiguousarray(audio.T)                      # [C, N], the layout of "fltp" frames
    frame_size = stream.codec_context.frame_size or 1024
    for start in range(0, planar.shape[1], frame_size):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar[:, start:start + frame_size]), format="fltp",
                                           layout=stream.layout.name)
        frame.sample_rate, frame.pts = sample_rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
