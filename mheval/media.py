"""Reading clips with PyAV (mp4 with H.264 video and AAC audio, no ffmpeg program needed), and the one writer.

Time comes from the streams, never from indexes: every frame carries its presentation time (pts × time_base, after
the container's edit lists), and the audio starts at its first sample's presentation time. A variable-frame-rate
clip or an audio track that starts late is therefore measured as it plays.

Memory does not grow with the clip: frames are decoded one at a time and converted straight to the size a metric
asks for (`ClipMedia.frames`), so no full-resolution array of the whole clip is ever built. Only the 16 kHz mono
audio (64 kB per second) is kept whole.

Every reader raises `MediaError` naming the file and the problem, so a damaged clip becomes one recorded failure
instead of a crash of the whole run; a stream the clip does not have raises `NotApplicable`. A clip that decodes to
far fewer frames or samples than its container declares (a truncated file whose index survived) is such a failure
too, never a shorter clip scored as if whole.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import av
import numpy as np

# the one writer, audio decoder and error type live in model/ (which must not import the harness); re-exported here
from model.video_io import MediaError, open_media, read_audio_stream, write_mp4  # noqa: F401

ASR_SAMPLE_RATE = 16_000
# A clip whose streams decode to less than this share of the frames or samples its container declares is cut short
# (a truncated download or copy whose index survived): scoring what is left would present a fragment as the clip.
DECLARED_SHARE_REQUIRED = 0.9


class NotApplicable(Exception):
    """The clip has nothing a measurement can use: here a missing stream; in the metrics no face, no speech…

    A subclass sets `code` when readers count its kind (e.g. judge parse failures); it is stored with the reason."""

    code: str | None = None


@dataclass(frozen=True)
class MediaInfo:
    has_video: bool
    has_audio: bool
    width: int
    height: int
    fps: float              # frames per second of presentation time (nominal rate for a one-frame clip)
    frame_count: int
    video_start: float      # presentation time of the first frame, seconds
    video_seconds: float    # from the first frame's start to the last frame's end
    audio_sample_rate: int
    audio_start: float      # presentation time of the first audio sample, seconds
    audio_seconds: float


@dataclass(frozen=True)
class Frame:
    index: int
    time: float             # presentation time, seconds, on the container's timeline (shared with the audio)
    image: np.ndarray       # uint8 [h, w] grey or [h, w, 3] RGB, at the size that was asked for


def frame_rate(times: np.ndarray, nominal: float) -> float:
    """Frames per second of presentation time: (frames − 1) over the span of their timestamps."""
    span = float(times[-1] - times[0]) if len(times) > 1 else 0.0
    return (len(times) - 1) / span if span > 0 else nominal


def probe(path: Path | str) -> MediaInfo:
    """Stream facts, measured by decoding every frame and sample (no pixel conversion): container headers of
    generated clips are often wrong or missing, and a clip that does not decode must fail here, not later."""
    with open_media(path) as container:
        if not container.streams.video and not container.streams.audio:
            raise MediaError(path, "no audio or video stream")
        streams = [*container.streams.video[:1], *container.streams.audio[:1]]
        declared_frames, declared_samples = _declared_lengths(container)
        for stream in streams:
            stream.thread_type = "AUTO"
        times, size, samples, audio_start, sample_rate = [], (0, 0), 0, None, 0
        try:
            for frame in container.decode(*streams):
                if isinstance(frame, av.VideoFrame):
                    times.append(_seconds(frame, len(times), streams[0], path))
                    size = (frame.width, frame.height)
                else:
                    audio_start = frame.time if audio_start is None and frame.time is not None else audio_start
                    samples += frame.samples
                    sample_rate = frame.sample_rate
        except av.FFmpegError as err:
            raise MediaError(path, f"stream cannot be decoded ({err})") from err
        has_video, has_audio = bool(container.streams.video), bool(container.streams.audio)
        nominal = _nominal_rate(container.streams.video[0]) if has_video else 0.0
    if has_video and not times:
        raise MediaError(path, "video stream has no frames")
    if has_audio and not samples:
        raise MediaError(path, "audio stream has no samples")
    _check_declared_lengths(path, len(times), declared_frames, samples, declared_samples)
    times = np.sort(np.array(times))
    fps = frame_rate(times, nominal) if has_video else 0.0
    return MediaInfo(
        has_video=has_video, has_audio=has_audio, width=size[0], height=size[1], fps=fps, frame_count=len(times),
        video_start=float(times[0]) if has_video else 0.0,
        video_seconds=float(times[-1] - times[0]) + 1.0 / fps if has_video and fps else 0.0,
        audio_sample_rate=sample_rate, audio_start=float(audio_start or 0.0),
        audio_seconds=samples / sample_rate if has_audio else 0.0,
    )


def _declared_lengths(container) -> tuple[int, int]:
    """(video frames, audio samples) the container's index declares for the first streams; 0 where it says nothing
    (mp4 declares both; Matroska and WebM often neither)."""
    frames = container.streams.video[0].frames if container.streams.video else 0
    samples = 0
    if container.streams.audio:
        audio = container.streams.audio[0]
        if audio.duration and audio.time_base and audio.sample_rate:
            samples = round(audio.duration * audio.time_base * audio.sample_rate)
    return frames, samples


def _check_declared_lengths(path: Path | str, frames: int, declared_frames: int, samples: int,
                            declared_samples: int) -> None:
    """MediaError when a stream decodes to far less than its container declares (`DECLARED_SHARE_REQUIRED`)."""
    short = [f"{decoded} of the {declared} {unit} it declares" for decoded, declared, unit in
             ((frames, declared_frames, "video frames"), (samples, declared_samples, "audio samples"))
             if declared and decoded < DECLARED_SHARE_REQUIRED * declared]
    if short:
        raise MediaError(path, f"clip is cut short (truncated file?): decodes {' and '.join(short)}")


def _nominal_rate(stream) -> float:
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    return float(rate) if rate else 0.0


def _seconds(frame: av.VideoFrame, index: int, stream, path: Path | str) -> float:
    """The frame's presentation time; by its index at the nominal rate only when the stream carries no timestamps."""
    if frame.time is not None:
        return float(frame.time)
    rate = _nominal_rate(stream)
    if not rate:
        raise MediaError(path, "video frames carry no timestamps and the stream no frame rate")
    return index / rate


def move_index_to_front(path: Path | str) -> None:
    """Rewrite an mp4 in place with its index (moov) before the media data, the same packets copied ("faststart"):
    a browser then reads it front to back, instead of first asking for the index at an offset that is the clip's
    own media length."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.index-first.mp4")
    try:
        with open_media(path) as source, av.open(str(partial), "w", format="mp4",
                                                 options={"movflags": "faststart"}) as target:
            streams = {stream.index: target.add_stream_from_template(stream)
                       for stream in (*source.streams.video, *source.streams.audio)}
            for packet in source.demux(*source.streams.video, *source.streams.audio):
                if packet.dts is not None:   # the demuxer's end-of-stream marker
                    packet.stream = streams[packet.stream.index]
                    target.mux(packet)
        os.replace(partial, path)
    except av.FFmpegError as err:
        raise MediaError(path, f"cannot be rewritten with its index first ({err})") from err
    finally:
        partial.unlink(missing_ok=True)


def analysis_size(width: int, height: int, short_side: int | None, enlarge: bool = True) -> tuple[int, int]:
    """(width, height) scaled so the short side is `short_side` (even numbers; aspect ratio kept); `enlarge`
    False never scales up."""
    if short_side is None or (not enlarge and min(width, height) <= short_side):
        return width, height
    scale = short_side / min(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def read_audio(path: Path | str, sample_rate: int = ASR_SAMPLE_RATE) -> np.ndarray:
    """The first audio stream as mono float32 in [-1, 1] at `sample_rate` (its first sample plays at
    `ClipMedia.audio_start`)."""
    return read_audio_stream(path, sample_rate)[0]


def read_video(path: Path | str) -> np.ndarray:
    """All frames as uint8 RGB [F, H, W, 3], for tools that rewrite short clips (`mheval validate`); metrics stream
    frames through `ClipMedia.frames` instead, whose memory does not grow with the clip."""
    return np.stack([frame.image for frame in ClipMedia(path).frames()])


class ClipMedia:
    """One clip as the metrics read it: frames streamed at the size each metric asks for, audio decoded once."""

    def __init__(self, path: Path | str, info: MediaInfo | None = None):
        """`info`: the clip's probe, when it was already taken of these very bytes (the run checks the sha256);
        probing decodes every frame, which costs as much as a metric's pass on noisy video."""
        self.path = Path(path)
        if info is not None:
            self.info = info

    @cached_property
    def info(self) -> MediaInfo:
        return probe(self.path)

    @staticmethod
    def recorded_info(facts: dict[str, Any]) -> MediaInfo | None:
        """A MediaInfo from a clip record's `media` facts (`MediaInfo.__dict__` when the run generated the clip);
        None when they are missing or were written by a version with other fields."""
        names = {field.name for field in fields(MediaInfo)}
        return MediaInfo(**facts) if isinstance(facts, dict) and set(facts) == names else None

    @cached_property
    def _streams(self) -> tuple[bool, bool]:
        if "info" in self.__dict__:   # probed already (or given): no need to open the file again
            return self.info.has_video, self.info.has_audio
        with open_media(self.path) as container:
            return bool(container.streams.video), bool(container.streams.audio)

    @property
    def has_video(self) -> bool:
        return self._streams[0]

    @property
    def has_audio(self) -> bool:
        return self._streams[1]

    def require(self, video: bool = False, audio: bool = False) -> None:
        """NotApplicable naming the stream the clip lacks."""
        if video and not self.has_video:
            raise NotApplicable("clip has no video")
        if audio and not self.has_audio:
            raise NotApplicable("clip has no audio")

    def frames(self, short_side: int | None = None, grey: bool = False, every_seconds: float = 0.0,
               enlarge: bool = True) -> Iterator[Frame]:
        """Frames in presentation order, decoded one at a time and converted by libswscale straight to `short_side`
        (area averaging when shrinking, bicubic when enlarging; None: native size). `every_seconds` > 0 yields only
        the first frame at or after each point of a grid of that step starting at the first frame."""
        self.require(video=True)
        with open_media(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            next_time, size = None, None
            try:
                for index, frame in enumerate(container.decode(stream)):
                    time = _seconds(frame, index, stream, self.path)
                    if every_seconds > 0:
                        if next_time is not None and time < next_time - 1e-6:
                            continue
                        next_time = time if next_time is None else next_time
                        next_time += every_seconds * (np.floor((time - next_time) / every_seconds + 1e-6) + 1)
                    if size is None:
                        size = analysis_size(frame.width, frame.height, short_side, enlarge)
                        interpolation = "AREA" if size[0] <= frame.width else "BICUBIC"
                    image = frame.to_ndarray(width=size[0], height=size[1], format="gray" if grey else "rgb24",
                                             interpolation=interpolation)
                    yield Frame(index, time, image)
            except av.FFmpegError as err:
                raise MediaError(self.path, f"video stream cannot be decoded ({err})") from err

    @cached_property
    def _audio(self) -> tuple[np.ndarray, float]:
        self.require(audio=True)
        return read_audio_stream(self.path, ASR_SAMPLE_RATE)

    @property
    def audio_16k(self) -> np.ndarray:
        """Mono float32 at 16 kHz; its first sample plays at `audio_start`."""
        return self._audio[0]

    @property
    def audio_start(self) -> float:
        return self._audio[1]

    @property
    def fps(self) -> float:
        return self.info.fps

    @property
    def seconds(self) -> float:
        """How long the clip plays: its video, or its audio when it has no video."""
        return self.info.video_seconds if self.info.has_video else self.info.audio_seconds
