"""The project's one H.264 + AAC mp4 writer and its one audio decoder, through PyAV (no ffmpeg program).

The generator (`model.pipeline`, the a2v reference audio) and the harness (`mheval.media`, the puppet adapter,
`mheval validate`) all write clips with `write_mp4` and decode audio with `read_audio_stream`. They live here because
`model/` must not import the harness; `mheval.media` re-exports them and builds its streaming reader on `open_media`.
Every reader raises `MediaError` naming the file and the problem.

The original writes the frames with imageio (libx264), the audio as a 16-bit WAV, and muxes both with
`ffmpeg -c:v copy -c:a aac` without `-shortest`, so the audio track keeps its own length (spec 4.6). Here both
streams are encoded in one pass; the audio is quantised to 16 bits first so AAC sees the same samples.

Timing is explicit: frames are stamped at `index / fps`, or at `frame_times` (variable frame rate), and the audio
track may start `audio_start` seconds after the video (the mp4 muxer writes an edit list for the delay), which is
how `mheval validate` builds the clips that test timestamp handling.
"""
from __future__ import annotations

import itertools
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import av
import numpy as np

AAC_BIT_RATE = 128_000        # ffmpeg's default for stereo AAC; transparent for speech
# veryfast: "medium" took 3x longer (1.7 s for 5 s of 448x256) for no visible gain at crf 18. A clip's sha256 is its
# identity in the run store, so the same frames must give the same bytes in any process on any machine: the thread
# count is fixed (x264's default follows the CPUs a process may use: a Ray worker's share, another machine), and
# macroblock-tree rate control is off — with it, the same frames came out with other bytes from one encode to the next
# (on noise-like video after torch had run in the process, and on the puppet's clips depending on what the process had
# encoded before; tests/test_media.py). Without it crf spends a few percent more bits for the same quality.
H264_OPTIONS = {"preset": "veryfast", "crf": "18", "threads": "4", "x264-params": "mbtree=0"}
VARIABLE_RATE_TIME_BASE = Fraction(1, 90_000)   # the MPEG clock: exact for every common frame duration



class MediaError(RuntimeError):
    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def open_media(path: Path | str) -> av.container.InputContainer:
    """The file opened for reading; a missing, empty or unreadable file is a `MediaError`."""
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


def read_audio_stream(path: Path | str, sample_rate: int) -> tuple[np.ndarray, float]:
    """The first audio stream as mono float32 in [-1, 1] at `sample_rate` (libswresample), and the presentation
    time of its first sample in seconds."""
    with open_media(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks, start = [], None
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    start = out.time if start is None else start
                    chunks.append(out.to_ndarray().reshape(-1))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
        except av.FFmpegError as err:
            raise MediaError(path, f"audio stream cannot be decoded ({err})") from err
    if not chunks:
        raise MediaError(path, "audio stream has no samples")
    return np.concatenate(chunks).astype(np.float32), float(start or 0.0)

def write_mp4(path: str | Path, frames: Iterable[np.ndarray] | None, fps: int, audio: np.ndarray | None, sample_rate: int,
              *, video_bitrate: int | None = None, frame_times: Sequence[float] | None = None,
              audio_start: float = 0.0) -> None:
    """Write uint8 RGB frames (an array [F, H, W, 3] or any iterable of [H, W, 3]; even H and W; None: no video
    track) and float audio in [-1, 1] ([N] mono or [N, C] with C = 1 or 2; None: no audio track) as H.264 + AAC.

    `video_bitrate` replaces the constant-quality setting by a target bitrate (bits per second); `frame_times`
    (seconds, one per frame, increasing) replaces the constant rate `fps`; `audio_start` (seconds, ≥ 0) delays the
    audio track against the video. Written to a temporary name and renamed, so a crash never leaves a half-written
    clip at `path`.
    """
    path = Path(path)
    audio = _audio_channels_last(audio)
    if audio_start < 0:
        raise ValueError(f"audio_start must be ≥ 0 (delay the audio), got {audio_start}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial.mp4")
    frames = iter(() if frames is None else frames)
    first = next(frames, None)
    if first is None and audio is None:
        raise ValueError("nothing to write: no frames and no audio")
    try:
        with av.open(str(partial), mode="w", format="mp4") as container:
            video_stream = None if first is None else _add_video_stream(
                container, _checked_frame(first, 0).shape, fps, video_bitrate, frame_times)
            audio_stream = None if audio is None else _add_audio_stream(container, audio.shape[1], sample_rate)
            if video_stream is not None:
                for index, image in enumerate(itertools.chain([first], frames)):
                    frame = av.VideoFrame.from_ndarray(_checked_frame(image, index), format="rgb24")
                    if frame_times is not None:
                        frame.pts = round(frame_times[index] / VARIABLE_RATE_TIME_BASE)
                        frame.time_base = VARIABLE_RATE_TIME_BASE
                    container.mux(video_stream.encode(frame))
                container.mux(video_stream.encode(None))
            if audio_stream is not None:
                _encode_audio(container, audio_stream, quantize_pcm16(audio), sample_rate,
                              round(audio_start * sample_rate))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _audio_channels_last(audio: np.ndarray | None) -> np.ndarray | None:
    if audio is None:
        return None
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.ndim != 2 or audio.shape[1] not in (1, 2):
        raise ValueError(f"audio must be [N] or [N, 1|2], got {audio.shape}")
    return audio


def _checked_frame(image: np.ndarray, index: int) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"frame {index} must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    if image.shape[0] % 2 or image.shape[1] % 2:
        raise ValueError(f"H.264 (yuv420p) needs even frame sizes, got {image.shape[1]}x{image.shape[0]}")
    return np.ascontiguousarray(image)


def _add_video_stream(container, shape: tuple[int, ...], fps: int, video_bitrate: int | None,
                      frame_times: Sequence[float] | None):
    stream = container.add_stream("libx264", rate=Fraction(fps))
    stream.height, stream.width = shape[:2]
    stream.pix_fmt = "yuv420p"
    if frame_times is not None:
        stream.codec_context.time_base = VARIABLE_RATE_TIME_BASE
    if video_bitrate is None:
        stream.options = dict(H264_OPTIONS)
    else:
        stream.options = {"preset": H264_OPTIONS["preset"]}
        stream.bit_rate = video_bitrate
    return stream


def quantize_pcm16(audio: np.ndarray) -> np.ndarray:
    """What a 16-bit WAV round trip keeps: clipped to [-1, 1), rounded to multiples of 1/32768."""
    return (np.clip(np.round(audio * 32768.0), -32768, 32767) / 32768.0).astype(np.float32)


def _add_audio_stream(container, channels: int, sample_rate: int):
    stream = container.add_stream("aac", rate=sample_rate)
    stream.layout = "stereo" if channels == 2 else "mono"
    stream.bit_rate = AAC_BIT_RATE
    return stream


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int, first_pts: int) -> None:
    planar = np.ascontiguousarray(audio.T)                      # [C, N], the layout of "fltp" frames
    frame_size = stream.codec_context.frame_size or 1024
    for start in range(0, planar.shape[1], frame_size):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar[:, start:start + frame_size]), format="fltp",
                                           layout=stream.layout.name)
        frame.sample_rate, frame.pts = sample_rate, first_pts + start
        frame.time_base = Fraction(1, sample_rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
