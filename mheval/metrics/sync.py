"""Audio-video sync without learned weights: mouth openness against the speech envelope.

Pipeline (per clip):
1. Face: OpenCV's frontal-face Haar cascade (Debian `opencv-data`, or the wheel's `cv2.data` where it ships them) on
   grey frames sampled every `detect_every_seconds`; the largest face per sample, median-smoothed and interpolated to
   every frame. Haar was chosen over mediapipe's face mesh because mediapipe 0.10.21 pins numpy<2, which the rest of
   mheval cannot use; a box is enough, since the signal below needs only where the mouth is, not its shape.
2. Mouth openness per frame: how much darker the mouth region (the lower-middle part of the face box, where an
   opening mouth shows its dark cavity) is than the whole face, so global lighting changes cancel out.
3. Speech envelope per frame: log RMS of the audio in a 50 ms window centred on the frame's display interval, and
   an energy voice-activity detector on it (above both the noise floor + 12 dB and the loudest level − 35 dB).
4. Both signals lose their 1-second moving average (slow lighting and pose drift; the 2–7 Hz band where mouth
   motion follows the voice is kept). Pearson correlation of mouth[t] with envelope[t + lag] for every lag in
   ±`max_offset_frames`, on the frames within `context_frames` of speech (speech onsets and ends carry most of the
   timing); the best lag is refined to a fraction of a frame with a parabola through the peak and its neighbours.

Sign convention: `offset_ms` > 0 means the audio comes LATER than the mouth (audio lags video), the same sign as the
puppet adapter's `shift_ms`; < 0 means the sound leads the lips. Natural speech is not at 0: the mouth typically
leads the voice by 100–300 ms at onsets, so compare models with each other, not with zero. Calibrated on puppet
clips with known shifts (tests/test_sync.py, `mheval validate`): error ≤ 1 frame for every shift within ±10 frames.

`confidence` is how far the correlation peak stands above the median over all lags (0: no preferred lag).
`speech_mouth_motion` is the mean frame-to-frame change of mouth openness during speech (openness is a ratio of grey
levels; the puppet moves ~0.08–0.1 per frame, a frozen face 0): near 0 the face does not articulate, and the offset
is then meaningless, which its low confidence also shows. `silent_mouth_motion` is the same during silences divided
by that during speech (0: the mouth rests when nobody speaks; about 1: it moves as much as when speaking).

PyAV decodes AAC with the encoder's priming samples already trimmed (an impulse written at t comes back at t to the
sample, tested), so no codec delay is compensated here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mheval.media import ASR_SAMPLE_RATE
from mheval.metrics import ClipContext, Metric, NotApplicable, WeightFile, register, sha256_file

CASCADE_NAME = "haarcascade_frontalface_default.xml"
CASCADE_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")
# Mouth region inside a Haar face box, as fractions of its width (x) and height (y).
MOUTH_X = (0.28, 0.72)
MOUTH_Y = (0.62, 0.95)
DETECT_SHORT_SIDE = 180  # grey frames are scaled to this short side for detection only


@dataclass(frozen=True)
class SyncConfig:
    max_offset_frames: int = 15
    envelope_window_ms: float = 50.0
    detect_every_seconds: float = 0.2
    min_face_fraction: float = 0.5     # of sampled frames with a face, else "not applicable"
    min_speech_seconds: float = 0.5
    context_frames: int = 15           # frames around speech that enter the correlation
    detrend_seconds: float = 1.0       # moving average removed from both signals (slow lighting / pose drift)
    vad_above_floor_db: float = 12.0
    vad_below_peak_db: float = 35.0


def find_cascade() -> Path | None:
    directories = [Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or "."), *map(Path, CASCADE_DIRS)]
    return next((d / CASCADE_NAME for d in directories if (d / CASCADE_NAME).is_file()), None)


@register
class AudioVideoSync(Metric):
    name = "sync"
    version = "3"
    inputs = ("video", "audio")
    fields = ("abs_offset_ms", "offset_ms", "offset_frames", "confidence", "corr_at_zero", "corr_at_peak",
              "speech_mouth_motion", "silent_mouth_motion", "speech_seconds", "face_fraction")
    headline = "abs_offset_ms"
    lower_is_better = True
    description = ("weight-free lip sync: Haar face, mouth darkness vs speech envelope, cross-correlation ±15 frames;"
                   " offset_ms > 0 = audio lags video")
    options_class = SyncConfig

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._detector = None

    def config(self) -> dict[str, Any]:
        return asdict(self.settings)

    def weights(self) -> list[WeightFile]:
        cascade = find_cascade()
        return [WeightFile(str(cascade), sha256_file(cascade))] if cascade else []

    def unavailable(self) -> str | None:
        if find_cascade() is None:
            return (f"{CASCADE_NAME} not found in cv2.data or {', '.join(CASCADE_DIRS)}; "
                    "install Debian's opencv-data (apt-get install opencv-data)")
        return None

    @property
    def detector(self) -> cv2.CascadeClassifier:
        if self._detector is None:
            self._detector = cv2.CascadeClassifier(str(find_cascade()))
        return self._detector

    def score(self, clip: ClipContext) -> dict[str, Any]:
        media, cfg = clip.media, self.settings
        if not media.has_audio:
            raise NotApplicable("no audio stream")
        frames, fps = media.frames, media.fps
        boxes, face_fraction = track_face(self.detector, frames, fps, cfg)
        envelope = speech_envelope(media.audio_16k, ASR_SAMPLE_RATE, fps, len(frames), cfg.envelope_window_ms)
        speech = voice_activity(envelope, cfg)
        if speech.sum() < cfg.min_speech_seconds * fps:
            raise NotApplicable(f"no speech ({speech.sum() / fps:.2f} s of voice activity)")
        mouth = mouth_openness(frames, boxes)
        window = dilate(speech, cfg.context_frames)
        width = max(1, int(round(cfg.detrend_seconds * fps)))
        correlations = lagged_correlations(detrend(mouth, width), detrend(envelope, width), window,
                                           cfg.max_offset_frames)
        lag = float(refine_peak(correlations) - cfg.max_offset_frames)
        offset_ms = 1000.0 * lag / fps
        return {
            "abs_offset_ms": abs(offset_ms),
            "offset_ms": offset_ms,
            "offset_frames": lag,
            "confidence": float(correlations.max() - np.median(correlations)),
            "corr_at_zero": float(correlations[cfg.max_offset_frames]),
            "corr_at_peak": float(correlations.max()),
            "speech_mouth_motion": float(np.abs(np.diff(mouth))[speech[1:]].mean()),
            "silent_mouth_motion": silent_motion_ratio(mouth, speech),
            "speech_seconds": float(speech.sum() / fps),
            "face_fraction": face_fraction,
            "detail": {"fps": fps, "correlations": [round(float(c), 5) for c in correlations],
                       "sign": "offset_ms > 0: audio lags video"},
        }


def track_face(detector: cv2.CascadeClassifier, frames: np.ndarray, fps: float,
               cfg: SyncConfig) -> tuple[np.ndarray, float]:
    """Face box (x, y, w, h) for every frame [F, 4] and the fraction of sampled frames where a face was found."""
    step = max(1, int(round(cfg.detect_every_seconds * fps)))
    sampled = np.arange(0, len(frames), step)
    found_at, found = [], []
    for index in sampled:
        box = largest_face(detector, frames[index])
        if box is not None:
            found_at.append(index)
            found.append(box)
    fraction = len(found) / len(sampled)
    if fraction < cfg.min_face_fraction:
        raise NotApplicable(f"no face (found in {fraction:.0%} of sampled frames)")
    found = median_smooth(np.array(found, dtype=np.float64))
    every = np.arange(len(frames))
    return np.stack([np.interp(every, found_at, found[:, k]) for k in range(4)], axis=1), fraction


def detect_faces(detector: cv2.CascadeClassifier, frame: np.ndarray) -> np.ndarray:
    """Every face in an RGB frame as (x, y, w, h) rows in the frame's pixels, shape [K, 4]."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    scale = DETECT_SHORT_SIDE / min(grey.shape)
    if scale < 1:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    else:
        scale = 1.0
    side = max(24, min(grey.shape) // 6)
    faces = detector.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    return np.asarray(faces, dtype=np.float64).reshape(-1, 4) / scale


def largest_face(detector: cv2.CascadeClassifier, frame: np.ndarray) -> np.ndarray | None:
    faces = detect_faces(detector, frame)
    if len(faces) == 0:
        return None
    return max(faces, key=lambda box: box[2] * box[3])


def median_smooth(boxes: np.ndarray) -> np.ndarray:
    """Median over each detection and its neighbours: one stray detection must not move the mouth region."""
    if len(boxes) < 3:
        return boxes
    padded = np.concatenate([boxes[:1], boxes, boxes[-1:]])
    return np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)


def mouth_openness(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Per frame: 1 − mean grey of the mouth region / mean grey of the face (higher = darker = more open)."""
    height, width = frames.shape[1:3]
    openness = np.empty(len(frames))
    for index, (frame, (x, y, w, h)) in enumerate(zip(frames, boxes)):
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        face = grey[_span(y, h, (0.0, 1.0), height), _span(x, w, (0.0, 1.0), width)]
        mouth = grey[_span(y, h, MOUTH_Y, height), _span(x, w, MOUTH_X, width)]
        openness[index] = 1.0 - mouth.mean() / max(face.mean(), 1.0)
    return openness


def _span(start: float, length: float, fractions: tuple[float, float], limit: int) -> slice:
    low = int(np.clip(round(start + fractions[0] * length), 0, limit - 1))
    high = int(np.clip(round(start + fractions[1] * length), low + 1, limit))
    return slice(low, high)


def speech_envelope(audio: np.ndarray, sample_rate: int, fps: float, frame_count: int,
                    window_ms: float) -> np.ndarray:
    """Log RMS (dB) of `window_ms` of audio centred on each frame's display interval [i/fps, (i+1)/fps)."""
    half = int(round(window_ms / 2000 * sample_rate))
    centres = np.round((np.arange(frame_count) + 0.5) / fps * sample_rate).astype(int)
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
