"""Reading and writing clips with PyAV: mp4 with H.264 video and AAC audio, no ffmpeg program needed.

Every reader raises `MediaError` naming the file and the problem, so a damaged clip becomes one recorded failure
instead of a crash of the whole run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path

import av
import numpy as np

ASR_SAMPLE_RATE = 16_000


class MediaError(RuntimeError):
    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True)
class MediaInfo:
    width: int
    height: int
    fps: float
    frame_count: int
    video_seconds: float
    has_audio: bool
    audio_sample_rate: int
    audio_seconds: float


def _open(path: Path | str) -> av.container.InputContainer:
    path = Path(path)
    if not path.exists():
        raise MediaError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise MediaError(path, "file is empty")
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise MediaError(path, f"not a readable media file ({reason})") from err


def probe(path: Path | str) -> MediaInfo:
    """Stream facts, counted by decoding: container headers of generated clips are often wrong or missing."""
    frames = read_video(path)
    fps = _video_fps(path)
    with _open(path) as container:
        has_audio = bool(container.streams.audio)
        sample_rate = container.streams.audio[0].rate if has_audio else 0
    audio_seconds = len(read_audio(path, sample_rate)) / sample_rate if has_audio else 0.0
    return MediaInfo(
        width=frames.shape[2], height=frames.shape[1], fps=fps, frame_count=len(frames),
        video_seconds=len(frames) / fps, has_audio=has_audio, audio_sample_rate=sample_rate,
        audio_seconds=audio_seconds,
    )


def _video_fps(path: Path | str) -> float:
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(path, "no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.base_rate or stream.guessed_rate
        if not rate:
            raise MediaError(path, "video stream has no frame rate")
        return float(rate)


def read_video(path: Path | str) -> np.ndarray:
    """All frames as uint8 RGB, shape [F, H, W, 3]."""
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(path, "no video stream")
        try:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        except av.FFmpegError as err:
            raise MediaError(path, f"video stream cannot be decoded ({err})") from err
    if not frames:
        raise MediaError(path, "video stream has no frames")
    return np.stack(frames)


def read_audio(path: Path | str, sample_rate: int = ASR_SAMPLE_RATE) -> np.ndarray:
    """The first audio stream as mono float32 in [-1, 1] at `sample_rate`."""
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        try:
            for frame in container.decode(audio=0):
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
        except av.FFmpegError as err:
            raise MediaError(path, f"audio stream cannot be decoded ({err})") from err
    if not chunks:
        raise MediaError(path, "audio stream has no samples")
    return np.concatenate(chunks).astype(np.float32)


def write_mp4(
    path: Path | str,
    frames: np.ndarray,
    fps: int,
    audio: np.ndarray | None,
    sample_rate: int,
    video_bitrate: int | None = None,
) -> None:
    """Write uint8 RGB frames [F, H, W, 3] and float audio ([N] mono or [C, N]) as H.264 + AAC, atomically.

    H.264 in yuv420p needs even sizes, so odd sizes are an error rather than a silent crop.
    """
    path = Path(path)
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must be [F, H, W, 3] uint8, got shape {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 needs even frame sizes, got {width}x{height}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial.mp4")
    with av.open(str(partial), mode="w") as container:
        video = container.add_stream("libx264", rate=Fraction(fps))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        # one encoder thread: x264 with several threads made different bytes for the same frames from run to run
        video.options = {"preset": "veryfast", "threads": "1", **({"crf": "18"} if video_bitrate is None else {})}
        if video_bitrate is not None:
            video.bit_rate = video_bitrate
        audio_stream = _add_audio_stream(container, audio, sample_rate)
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        if audio_stream is not None:
            _encode_audio(container, audio_stream, audio, sample_rate)
    os.replace(partial, path)


def _add_audio_stream(container, audio: np.ndarray | None, sample_rate: int):
    if audio is None:
        return None
    channels = 1 if audio.ndim == 1 else audio.shape[0]
    stream = container.add_stream("aac", rate=sample_rate)
    stream.layout = "mono" if channels == 1 else "stereo"
    stream.bit_rate = 128_000
    return stream


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int) -> None:
    planar = np.clip(np.atleast_2d(audio), -1.0, 1.0).astype(np.float32)
    frame_size = stream.codec_context.frame_size or 1024
    for start in range(0, planar.shape[1], frame_size):
        chunk = np.ascontiguousarray(planar[:, start:start + frame_size])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=stream.layout.name)
        frame.sample_rate = sample_rate
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


class ClipMedia:
    """One clip's decoded streams, decoded at most once however many metrics ask for them."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    @cached_property
    def frames(self) -> np.ndarray:
        return read_video(self.path)

    @cached_property
    def fps(self) -> float:
        return _video_fps(self.path)

    @cached_property
    def audio_16k(self) -> np.ndarray:
        return read_audio(self.path, ASR_SAMPLE_RATE)

    @cached_property
    def has_audio(self) -> bool:
        with _open(self.path) as container:
            return bool(container.streams.audio)

    @property
    def seconds(self) -> float:
        return len(self.frames) / self.fps
