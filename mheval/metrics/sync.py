"""Audio-video sync without learned weights: mouth openness against the speech envelope, on the streams' clock.

Pipeline (per clip), all of it in `sync_signals`, which the metric and the dashboard's curves both call:
1. Face: OpenCV's frontal-face Haar cascade (Debian `opencv-data`, or the wheel's `cv2.data` where it ships them) on
   grey frames (short side 180) sampled every `detect_every_seconds` of presentation time; the largest face per
   sample, median-smoothed and interpolated in time to every frame. Haar was chosen over mediapipe's face mesh
   because mediapipe 0.10.21 pins numpy<2, which the rest of mheval cannot use; a box is enough, since the signal
   below needs only where the mouth is, not its shape.
2. Mouth openness per frame (grey frames, short side ≤ 360; a region mean barely depends on the size): how much
   darker the mouth region (the lower-middle part of the face box, where an opening mouth shows its dark cavity) is
   than the whole face, so global lighting changes cancel out. The same ratio for the nose band, which does not
   articulate, is the noise reference (codec noise, box jitter, head motion).
3. Time: every frame sits at its presentation time (pts × time_base, after edit lists), and the openness is
   resampled linearly onto a uniform grid at the clip's frame rate (frames over the span of their timestamps), so a
   variable-frame-rate clip is measured as it plays. The audio's first sample plays at its stream's start time, so
   an audio track that starts late (edit list, `-itsoffset`) is measured as late. Below `min_fps` frames per second
   the mouth is not sampled often enough to time it: not applicable.
4. Speech envelope on the grid: log RMS of `envelope_window_ms` of audio centred on each grid time, and an energy
   voice-activity detector on it (above both the noise floor + 12 dB and the loudest level − 35 dB).
5. Both signals lose their 1-second moving average (slow lighting and pose drift; the 2–7 Hz band where mouth
   motion follows the voice is kept). Pearson correlation of mouth[t] with envelope[t + lag] for every lag within
   ±`max_offset_ms`, on the grid points within `context_ms` of speech (speech onsets and ends carry most of the
   timing); the best lag is refined to a fraction of a step with a parabola through the peak and its neighbours.

Sign convention: `offset_ms` > 0 means the audio comes LATER than the mouth (audio lags video), the same sign as the
puppet adapter's `shift_ms`; < 0 means the sound leads the lips. Natural speech is not at 0: the mouth typically
leads the voice by 100–300 ms at onsets, so compare models with each other, not with zero. Calibrated on puppet
clips with known shifts (tests/test_sync.py, `mheval validate`): error ≤ 1 frame for every shift within ±10 frames.

Not applicable (never a number): no audio or no video, one frame or fewer than `min_fps` frames per second, no face,
no speech, and no articulation — `articulation`, the mouth's mean change per step during speech over the nose
band's, below `min_articulation` (1.5). Calibrated on the smoke items: the puppet scores 3.0–3.7 (its head sways,
which moves the nose band too); a frozen copy scores 0 (identical frames), and 0.2–0.8 with per-frame noise, a
1–2 px camera shake or a slow sway added. A still portrait whose mouth moves has a still nose band and scores high,
so it is measured.

`confidence` is how far the correlation peak stands above the median over all lags (0: no preferred lag); a clip is
`confident` when it reaches `min_confidence` (0.5). Calibrated on the smoke items: puppet clips with their own speech
score 0.60–0.93 at every shift within ±10 frames; puppet faces paired with another item's speech, which have no true
lag, 0.15–0.54 (1 of 12 pairs above 0.5: the puppet's lines share their pauses, a harder null than real speech). `at_search_boundary` is set when the peak
is at ±`max_offset_ms`: the true offset may lie beyond. `silent_mouth_motion` is the mouth's change during
silences over that during speech (0: the mouth rests when nobody speaks; about 1: it moves as much as when speaking).

The summary of a model × language (`summarize`) is the signed median `offset_ms` over its confident clips, with a
bootstrap interval over prompts, and notes with the share of confident clips and how many sit at the boundary (a
median is rank-based, so a clip censored at the boundary moves it only when half of them are).

No codec delay is compensated: the decoded audio carries its own timestamps, which account for the AAC encoder's
priming samples (an impulse written at t is heard at t, to the sample, with and without a start offset; tested).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from mheval.media import ASR_SAMPLE_RATE, ClipMedia, frame_rate
from mheval.metrics import ClipContext, GroupSummary, Metric, NotApplicable, register
from mheval.stats import bootstrap_median

CASCADE_NAME = "haarcascade_frontalface_default.xml"
CASCADE_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")
# Regions inside a Haar face box, as fractions of its width (x) and height (y).
MOUTH_X, MOUTH_Y = (0.28, 0.72), (0.62, 0.95)
NOSE_X, NOSE_Y = (0.38, 0.62), (0.38, 0.56)      # between the eyes and the mouth: moves with the head, not the lips
FACE_X, FACE_Y = (0.0, 1.0), (0.0, 1.0)
DETECT_SHORT_SIDE = 180   # grey frames are scaled to this short side for detection only
MOUTH_SHORT_SIDE = 360    # and to at most this one for the openness ratios
NOISE_FLOOR = 1e-3        # openness change per step that counts as still (≈ 0.15 grey level on a mid-grey face)


@dataclass(frozen=True)
class SyncDetail:
    """The correlation of mouth and speech at every lag the search tried (`offset_ms` is its refined peak)."""

    correlations: list[float] = field(default_factory=list)   # lag −max_lag … +max_lag grid steps
    lag_step_ms: float | None = None
    sign: str = "offset_ms > 0: audio lags video"


@dataclass(frozen=True)
class SyncConfig:
    max_offset_ms: float = 600.0
    envelope_window_ms: float = 50.0
    detect_every_seconds: float = 0.2
    min_face_fraction: float = 0.5     # of sampled frames with a face, else "not applicable"
    min_speech_seconds: float = 0.5
    min_fps: float = 10.0              # frames per second of presentation time, else "not applicable"
    min_articulation: float = 1.5      # mouth motion over nose-band motion during speech, else "not applicable"
    min_confidence: float = 0.5        # a clip below it stays out of the summary's median
    context_ms: float = 600.0          # time around speech that enters the correlation
    detrend_seconds: float = 1.0       # moving average removed from both signals (slow lighting / pose drift)
    vad_above_floor_db: float = 12.0
    vad_below_peak_db: float = 35.0


def find_cascade() -> Path | None:
    directories = [Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or "."), *map(Path, CASCADE_DIRS)]
    return next((d / CASCADE_NAME for d in directories if (d / CASCADE_NAME).is_file()), None)


@lru_cache(maxsize=1)
def load_cascade(path: Path) -> cv2.CascadeClassifier:
    return cv2.CascadeClassifier(str(path))


@dataclass(frozen=True)
class SyncSignals:
    """What the sync metric measures on one clip, on a uniform time grid."""

    rate: float                # grid points per second: the clip's frame rate
    times: np.ndarray          # [T] grid times, seconds on the container's clock
    mouth: np.ndarray          # [T] mouth openness
    nose: np.ndarray           # [T] the same ratio in the nose band: the noise reference
    envelope: np.ndarray       # [T] speech level, dB
    speech: np.ndarray         # [T] bool, voice activity
    max_lag: int               # lags run over −max_lag … +max_lag grid steps
    correlations: np.ndarray   # [2 · max_lag + 1] Pearson r of mouth[t] and envelope[t + lag]
    face_fraction: float

    @property
    def speech_seconds(self) -> float:
        return float(self.speech.sum() / self.rate)

    def motion_during_speech(self, signal: np.ndarray) -> float:
        return float(np.abs(np.diff(signal))[self.speech[1:]].mean()) if self.speech[1:].any() else 0.0

    @property
    def articulation(self) -> float:
        return self.motion_during_speech(self.mouth) / max(self.motion_during_speech(self.nose), NOISE_FLOOR)


def sync_signals(media: ClipMedia, cfg: SyncConfig) -> SyncSignals:
    """Face track, mouth and nose-band openness, speech envelope and lagged correlations of one clip.

    Raises NotApplicable without audio or video, with one frame or below `min_fps`, and without a face."""
    media.require(video=True, audio=True)
    cascade = find_cascade()
    if cascade is None:
        raise RuntimeError(AudioVideoSync().unavailable())
    times, boxes_at, boxes, sampled = [], [], [], 0
    next_detection = None
    for frame in media.frames(short_side=DETECT_SHORT_SIDE, grey=True, enlarge=False):
        times.append(frame.time)
        if next_detection is None or frame.time >= next_detection - 1e-6:
            next_detection = frame.time + cfg.detect_every_seconds
            sampled += 1
            box = largest_face(load_cascade(cascade), frame.image)
            if box is not None:
                boxes_at.append(frame.time)
                boxes.append(box / np.tile(frame.image.shape[1::-1], 2))   # as fractions of width and height
    times = np.array(times)
    if len(times) < 2:
        raise NotApplicable("one video frame: no motion to time")
    rate = frame_rate(times, 0.0)
    if rate < cfg.min_fps:
        raise NotApplicable(f"{rate:.1f} frames per second, below min_fps {cfg.min_fps:g}: "
                            "the mouth is not sampled often enough to time it")
    face_fraction = len(boxes) / sampled
    if face_fraction < cfg.min_face_fraction:
        raise NotApplicable(f"no face (found in {face_fraction:.0%} of sampled frames)")
    smoothed = median_smooth(np.array(boxes))
    track = np.stack([np.interp(times, boxes_at, smoothed[:, k]) for k in range(4)], axis=1)   # [F, 4] fractions
    openness = np.array([region_openness(frame.image, track[frame.index]) for frame in
                         media.frames(short_side=MOUTH_SHORT_SIDE, grey=True, enlarge=False)])   # [F, 2]
    # Each frame is shown from its time until the next one's: its openness belongs to that interval's centre.
    durations = np.diff(times, append=times[-1] + np.median(np.diff(times)))
    centres = times + durations / 2
    grid = centres[0] + np.arange(int(np.floor((centres[-1] - centres[0]) * rate + 1e-6)) + 1) / rate
    mouth, nose = (np.interp(grid, centres, openness[:, k]) for k in range(2))
    envelope = speech_envelope(media.audio_16k, ASR_SAMPLE_RATE, grid - media.audio_start, cfg.envelope_window_ms)
    speech = voice_activity(envelope, cfg)
    max_lag = max(1, int(round(cfg.max_offset_ms / 1000 * rate)))
    width = max(1, int(round(cfg.detrend_seconds * rate)))
    window = dilate(speech, int(round(cfg.context_ms / 1000 * rate)))
    correlations = lagged_correlations(detrend(mouth, width), detrend(envelope, width), window, max_lag)
    return SyncSignals(rate, grid, mouth, nose, envelope, speech, max_lag, correlations, face_fraction)


@register
class AudioVideoSync(Metric):
    name = "sync"
    version = "4"
    inputs = ("video", "audio")
    fields = ("offset_ms", "abs_offset_ms", "offset_frames", "confidence", "confident", "at_search_boundary",
              "corr_at_zero", "corr_at_peak", "articulation", "speech_mouth_motion", "silent_mouth_motion",
              "speech_seconds", "face_fraction", "frame_rate")
    headline = "offset_ms"
    lower_is_better = True   # for the distance to `ideal`: the signed offset itself ranks by how far it is from 0
    ideal = 0.0
    unit = "ms"
    paper_column = "sync"
    detail_class = SyncDetail
    description = ("weight-free lip sync on frame timestamps: Haar face, mouth darkness vs speech envelope, "
                   "cross-correlation within ±600 ms; summary: signed median over confident clips, "
                   "offset_ms > 0 = audio lags video")
    options_class = SyncConfig

    def config(self) -> dict[str, Any]:
        return asdict(self.settings)

    def weight_paths(self) -> list[Path]:
        cascade = find_cascade()
        return [cascade] if cascade else []

    def unavailable(self) -> str | None:
        if find_cascade() is None:
            return (f"{CASCADE_NAME} not found in cv2.data or {', '.join(CASCADE_DIRS)}; "
                    "install Debian's opencv-data (apt-get install opencv-data)")
        return None

    def score(self, clip: ClipContext) -> dict[str, Any]:
        cfg = self.settings
        signals = sync_signals(clip.media, cfg)
        if signals.speech_seconds < cfg.min_speech_seconds:
            raise NotApplicable(f"no speech ({signals.speech_seconds:.2f} s of voice activity)")
        if signals.articulation < cfg.min_articulation:
            raise NotApplicable(f"no mouth motion during speech: the mouth moves {signals.articulation:.1f}× as much "
                                f"as the nose band (codec noise, head motion), below min_articulation "
                                f"{cfg.min_articulation:g}")
        correlations, max_lag = signals.correlations, signals.max_lag
        lag = float(refine_peak(correlations) - max_lag)
        offset_ms = 1000.0 * lag / signals.rate
        confidence = float(correlations.max() - np.median(correlations))
        return {
            "offset_ms": offset_ms,
            "abs_offset_ms": abs(offset_ms),
            "offset_frames": lag,
            "confidence": confidence,
            "confident": confidence >= cfg.min_confidence,
            "at_search_boundary": int(np.argmax(correlations)) in (0, len(correlations) - 1),
            "corr_at_zero": float(correlations[max_lag]),
            "corr_at_peak": float(correlations.max()),
            "articulation": signals.articulation,
            "speech_mouth_motion": signals.motion_during_speech(signals.mouth),
            "silent_mouth_motion": silent_motion_ratio(signals.mouth, signals.speech),
            "speech_seconds": signals.speech_seconds,
            "face_fraction": signals.face_fraction,
            "frame_rate": signals.rate,
            "detail": {"correlations": [round(float(c), 5) for c in correlations],
                       "lag_step_ms": 1000.0 / signals.rate, "sign": "offset_ms > 0: audio lags video"},
        }

    @classmethod
    def compared_rows(cls, rows: pd.DataFrame) -> pd.DataFrame:
        """Only clips measured with confidence: an offset without a clear correlation peak is not evidence."""
        scored = cls.scored_rows(rows)
        return scored[_flag(scored, f"{cls.name}.confident")]

    @classmethod
    def summarize(cls, rows: pd.DataFrame, by_language: bool = False) -> GroupSummary:
        """Signed median offset over the confident clips, bootstrapped over prompts; notes: the share of confident
        clips and how many of them sit at the search boundary. Offsets are milliseconds in every language, so the
        `all` row (`by_language`) pools the clips instead of averaging per-language medians."""
        scored = cls.scored_rows(rows)
        if scored.empty:
            return GroupSummary(bootstrap_median([], []))
        confident = cls.compared_rows(scored)
        notes = [f"confident {len(confident)}/{len(scored)}"]
        boundary = int(_flag(confident, f"{cls.name}.at_search_boundary").sum())
        if boundary:
            notes.append(f"{boundary} at search boundary")
        estimate = bootstrap_median(confident.item_id.to_numpy(),
                                    pd.to_numeric(confident[f"{cls.name}.{cls.headline}"], errors="coerce").to_numpy())
        return GroupSummary(estimate, tuple(notes))


def _flag(rows: pd.DataFrame, column: str) -> pd.Series:
    """A yes/no column of a clip table; False where it is missing (scores of sync versions before 4 lack it)."""
    return rows.get(column, pd.Series(False, index=rows.index)).fillna(False).astype(bool)


def detect_faces(detector: cv2.CascadeClassifier, grey: np.ndarray) -> np.ndarray:
    """Every face in a uint8 grey frame [H, W] as (x, y, w, h) rows in its pixels, shape [K, 4] float64."""
    side = max(24, min(grey.shape) // 6)
    faces = detector.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    return np.asarray(faces, dtype=np.float64).reshape(-1, 4)


def largest_face(detector: cv2.CascadeClassifier, grey: np.ndarray) -> np.ndarray | None:
    """The largest face (x, y, w, h) in pixels of a uint8 grey frame [H, W], or None."""
    faces = detect_faces(detector, grey)
    if len(faces) == 0:
        return None
    return max(faces, key=lambda box: box[2] * box[3])


def median_smooth(boxes: np.ndarray) -> np.ndarray:
    """Median over each detection and its neighbours: one stray detection must not move the mouth region."""
    if len(boxes) < 3:
        return boxes
    padded = np.concatenate([boxes[:1], boxes, boxes[-1:]])
    return np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)


def region_openness(grey: np.ndarray, box: np.ndarray) -> tuple[float, float]:
    """1 − mean grey of the mouth region / mean grey of the face (higher = darker = more open), and the same ratio
    for the nose band; `box` is (x, y, w, h) as fractions of the frame's width and height."""
    height, width = grey.shape
    x, y, w, h = box * (width, height, width, height)
    face = grey[_span(y, h, FACE_Y, height), _span(x, w, FACE_X, width)].mean()
    ratios = (1.0 - grey[_span(y, h, ys, height), _span(x, w, xs, width)].mean() / max(face, 1.0)
              for xs, ys in ((MOUTH_X, MOUTH_Y), (NOSE_X, NOSE_Y)))
    return tuple(ratios)


def _span(start: float, length: float, fractions: tuple[float, float], limit: int) -> slice:
    low = int(np.clip(round(start + fractions[0] * length), 0, limit - 1))
    high = int(np.clip(round(start + fractions[1] * length), low + 1, limit))
    return slice(low, high)


def speech_envelope(audio: np.ndarray, sample_rate: int, times: np.ndarray, window_ms: float) -> np.ndarray:
    """Log RMS (dB) of `window_ms` of audio centred on each time (seconds after the audio's first sample); outside
    the audio it is silence."""
    half = int(round(window_ms / 2000 * sample_rate))
    centres = np.round(np.asarray(times) * sample_rate).astype(int)
    squares = np.concatenate([[0.0], np.cumsum(np.square(audio, dtype=np.float64))])
    low = np.clip(centres - half, 0, len(audio))
    high = np.clip(centres + half, 0, len(audio))
    energy = (squares[high] - squares[low]) / (2 * half)
    return 10.0 * np.log10(energy + 1e-10)


def voice_activity(envelope_db: np.ndarray, cfg: SyncConfig) -> np.ndarray:
    floor, peak = np.percentile(envelope_db, [10, 99])
    threshold = max(floor + cfg.vad_above_floor_db, peak - cfg.vad_below_peak_db)
    return envelope_db > threshold


def dilate(mask: np.ndarray, frames: int) -> np.ndarray:
    kernel = np.ones(2 * frames + 1)
    return np.convolve(mask.astype(float), kernel, mode="same") > 0


def detrend(signal: np.ndarray, width: int) -> np.ndarray:
    """The signal minus its centred moving average over `width` frames (a high-pass below about fps/width Hz)."""
    if width <= 1:
        return signal
    padded = np.pad(signal, (width // 2, width - 1 - width // 2), mode="edge")
    return signal - np.convolve(padded, np.ones(width) / width, mode="valid")


def lagged_correlations(mouth: np.ndarray, envelope: np.ndarray, window: np.ndarray, max_lag: int) -> np.ndarray:
    """Pearson r of mouth[t] and envelope[t + lag] over t with t + lag in `window`, for lag = −max_lag … max_lag."""
    count = len(mouth)
    result = np.zeros(2 * max_lag + 1)
    for position, lag in enumerate(range(-max_lag, max_lag + 1)):
        t = np.arange(max(0, -lag), min(count, count - lag))
        t = t[window[t + lag]]
        if len(t) > 2:
            result[position] = pearson(mouth[t], envelope[t + lag])
    return result


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    scale = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / scale) if scale > 1e-12 else 0.0


def refine_peak(values: np.ndarray) -> float:
    """Index of the maximum, refined by a parabola through it and its two neighbours."""
    best = int(np.argmax(values))
    if best == 0 or best == len(values) - 1:
        return float(best)
    left, centre, right = values[best - 1: best + 2]
    curvature = left - 2 * centre + right
    return best + (0.5 * (left - right) / curvature if curvature < 0 else 0.0)


def silent_motion_ratio(mouth: np.ndarray, speech: np.ndarray) -> float | None:
    """Mean |Δ openness| in silences (3 frames clear of speech) over that in speech; None without enough of either."""
    motion = np.abs(np.diff(mouth))
    silent = ~dilate(speech, 3)[1:]
    speaking = speech[1:]
    if silent.sum() < 5 or speaking.sum() < 5:
        return None
    speaking_motion = motion[speaking].mean()
    return float(motion[silent].mean() / speaking_motion) if speaking_motion > 1e-9 else None
