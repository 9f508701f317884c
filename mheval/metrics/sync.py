"""Audio-video sync from facial landmarks: the lip opening against the speech envelope, on the streams' clock.

Pipeline (per clip), all of it in `sync_signals`, which the metric and the dashboard's curves both call:
1. Face: `mheval.faces.FaceTracker` on grey frames (short side ≤ 360, one decoding pass): dlib's HOG detector on
   every `detect_every_frames`-th frame (the image doubled when the face is below the detector's 80-pixel window),
   landmarks on every frame, fitted in the box the previous frame's landmarks give. Weights ship in PyPI packages
   (`dlib-bin`, `face-recognition-models`). Chosen over OpenCV's Haar cascade (version ≤ 4), which found the face of
   real video with real speech in 48 % of frames; the tracker finds carphone's face in 100 % of its frames (≥ 95 %
   tested, at 288 and at 144 pixels, where the face is about 50 px) at one detection per 5 frames.
2. Mouth signal per frame, by `landmarks`:
   - `68` (default): the lip opening, the inner lips' gap (points 61–63 to 67–65) over the mouth's width (48–54);
     its reference, which does not articulate, is the nose's length over the outer eye corners' distance (landmark
     jitter, pose). The 68-point model was trained on iBUG 300-W, whose terms exclude commercial use.
   - `5`: dlib's 5-point model (CC0) has no lips, so the signal is the one versions ≤ 4 used, how much darker the
     mouth region (the lower middle of the tracked box) is than the whole box, with the nose band as reference.
     It recovers the puppet's shifts, but on carphone its articulation is 1.2 (the mouth region darkens no more
     than the nose band as the head turns in the light), so a real face with a moving head is "not applicable"
     there: real faces need `68`.
   The detail records which (`mouth_signal`).
3. Time: every frame sits at its presentation time (pts × time_base, after edit lists), and the measure is
   resampled linearly onto a uniform grid at the clip's frame rate (frames over the span of their timestamps), so a
   variable-frame-rate clip is measured as it plays; frames without a face are interpolated from their neighbours.
   The audio's first sample plays at its stream's start time, so an audio track that starts late (edit list,
   `-itsoffset`) is measured as late. Below `min_fps` frames per second the mouth is not sampled often enough to
   time it: not applicable.
4. Speech envelope on the grid: log RMS of `envelope_window_ms` of audio centred on each grid time, and an energy
   voice-activity detector on it (above both the noise floor + 12 dB and the loudest level − 35 dB).
5. Both signals lose their 1-second moving average (slow lighting and pose drift; the 2–7 Hz band where mouth
   motion follows the voice is kept). Pearson correlation of mouth[t] with envelope[t + lag] for every lag within
   ±`max_offset_ms`, on the grid points within `context_ms` of speech (speech onsets and ends carry most of the
   timing); the best lag is refined to a fraction of a step with a parabola through the peak and its neighbours.

Sign convention: `offset_ms` > 0 means the audio comes LATER than the mouth (audio lags video), the same sign as the
puppet adapter's `shift_ms`; < 0 means the sound leads the lips. Natural speech is not at 0: the mouth typically
leads the voice by 100–300 ms at onsets, so compare models with each other, not with zero.

Validated (tests/test_sync.py, `mheval validate`): on carphone (a real man talking, upscaled to 352 × 288, 30 fps)
with a voice whose loudness follows his mouth's dark cavity (measured from pixels, with faces detected on every
frame), shifted by −200, −80, 0, +120, +240 ms: errors +0.4…+0.7 frames (+14…+22 ms); on puppet clips with their
own speech shifted by −10…+10 frames: every error ≤ 1 frame, with both `landmarks` settings.

Not applicable (never a number): no audio or no video, one frame or fewer than `min_fps` frames per second, no face
(in fewer than `min_face_fraction` of the frames), no speech, and no articulation — `articulation`, the mouth's mean
change per step during speech over the reference's, below `min_articulation` (1.5). Calibrated (landmarks=68): real
speech scores 2.4–3.3 (carphone at every shift), the puppet 2.9–4.1; frozen copies (the first frame repeated, then
encoded), and those with per-frame noise, a 1–2 px camera shake or a slow sway added, score 0.4–0.95, on carphone
and on the puppet. A still portrait whose mouth moves has a still reference and scores high (4.4), so it is measured.

`confidence` is how far the correlation peak stands above the median over all lags (0: no preferred lag); a clip is
`confident` when it reaches `min_confidence` (0.5). Calibrated (landmarks=68): carphone with its own voice scores
0.68–0.93 at every shift, puppet clips with their own speech 0.52–0.80 (two smoke items, every 2nd shift); puppet
faces paired with another item's speech, which have no true lag, 0.17–0.44, and carphone with its voice played
backwards 0.31 (tested: below 0.5).
`at_search_boundary` is set when the peak is at ±`max_offset_ms`: the true offset may lie beyond.
`silent_mouth_motion` is the mouth's change during silences over that during speech (0: the mouth rests when nobody
speaks; about 1: it moves as much as when speaking).

The summary of a model × language (`summarize`) is the signed median `offset_ms` over its confident clips, with a
bootstrap interval over prompts, and notes with the share of confident clips and how many sit at the boundary (a
median is rank-based, so a clip censored at the boundary moves it only when half of them are).

No codec delay is compensated: the decoded audio carries its own timestamps, which account for the AAC encoder's
priming samples (an impulse written at t is heard at t, to the sample, with and without a start offset; tested).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mheval import faces
from mheval.media import ASR_SAMPLE_RATE, ClipMedia, frame_rate
from mheval.metrics import ClipContext, GroupSummary, Metric, NotApplicable, register
from mheval.stats import bootstrap_median

ANALYSIS_SHORT_SIDE = 360   # grey frames are tracked and measured at most at this short side
# Regions of the tracked face box for the darkness signal (landmarks=5), as fractions of its width (x) and height
# (y); dlib's box runs from the eyebrows to the chin.
MOUTH_X, MOUTH_Y = (0.28, 0.72), (0.62, 1.0)
NOSE_X, NOSE_Y = (0.4, 0.6), (0.3, 0.55)      # between the eyes and the mouth: moves with the head, not the lips
NOISE_FLOOR = 1e-3        # openness change per step that counts as still (≈ 0.15 grey level on a mid-grey face)


@dataclass(frozen=True)
class SyncDetail:
    """The correlation of mouth and speech at every lag the search tried (`offset_ms` is its refined peak), and the
    mouth signal it correlated (`MOUTH_SIGNALS`; empty in scores of versions before 5, which all used darkness in a
    Haar face box)."""

    correlations: list[float] = field(default_factory=list)   # lag −max_lag … +max_lag grid steps
    lag_step_ms: float | None = None
    sign: str = "offset_ms > 0: audio lags video"
    mouth_signal: str = ""


LANDMARK_MODELS = {"68": faces.LANDMARKS_68, "5": faces.LANDMARKS_5}
MOUTH_SIGNALS = {"68": "lip opening (68-point landmarks)", "5": "mouth darkness (5-point landmarks)"}


@dataclass(frozen=True)
class SyncConfig:
    max_offset_ms: float = field(default=600.0, metadata={"help": "the lag search runs over ±this"})
    envelope_window_ms: float = field(default=50.0, metadata={"help": "audio window of each speech-level sample"})
    detect_every_frames: int = field(default=5, metadata={
        "help": "face detection on every Nth frame; landmarks on every frame from the previous one's"})
    min_face_fraction: float = field(default=0.5, metadata={"help": "share of frames with a face, else not "
                                                                    "applicable"})
    min_speech_seconds: float = field(default=0.5, metadata={"help": "voice activity needed, else not applicable"})
    min_fps: float = field(default=10.0, metadata={"help": "frames per second of presentation time, else not "
                                                           "applicable"})
    min_articulation: float = field(default=1.5, metadata={
        "help": "mouth motion over the still reference's motion during speech, else not applicable"})
    min_confidence: float = field(default=0.5, metadata={"help": "a clip below it stays out of the summary's median"})
    context_ms: float = field(default=600.0, metadata={"help": "time around speech that enters the correlation"})
    detrend_seconds: float = field(default=1.0, metadata={
        "help": "moving average removed from both signals (slow lighting and pose drift)"})
    vad_above_floor_db: float = field(default=12.0, metadata={"help": "voice activity: this far above the floor"})
    vad_below_peak_db: float = field(default=35.0, metadata={"help": "voice activity: at most this far below the "
                                                                     "peak"})
    landmarks: str = field(default="68", metadata={
        "choices": tuple(LANDMARK_MODELS),
        "help": "68: the lip opening from dlib's 68-point landmarks (trained on iBUG 300-W: non-commercial use only); "
                "5: how dark the mouth region of the face box is, tracked with dlib's 5-point landmarks (CC0 weights; "
                "measures the puppet, but a real face whose head moves is usually not applicable: use 68 there)"})


@dataclass(frozen=True)
class SyncSignals:
    """What the sync metric measures on one clip, on a uniform time grid."""

    rate: float                # grid points per second: the clip's frame rate
    times: np.ndarray          # [T] grid times, seconds on the container's clock
    mouth: np.ndarray          # [T] mouth opening
    reference: np.ndarray      # [T] a measure of the same kind on a part of the face that does not articulate
    envelope: np.ndarray       # [T] speech level, dB
    speech: np.ndarray         # [T] bool, voice activity
    max_lag: int               # lags run over −max_lag … +max_lag grid steps
    correlations: np.ndarray   # [2 · max_lag + 1] Pearson r of mouth[t] and envelope[t + lag]
    face_fraction: float
    mouth_signal: str          # MOUTH_SIGNALS[landmarks]

    @property
    def speech_seconds(self) -> float:
        return float(self.speech.sum() / self.rate)

    def motion_during_speech(self, signal: np.ndarray) -> float:
        return float(np.abs(np.diff(signal))[self.speech[1:]].mean()) if self.speech[1:].any() else 0.0

    @property
    def articulation(self) -> float:
        return self.motion_during_speech(self.mouth) / max(self.motion_during_speech(self.reference), NOISE_FLOOR)


def face_measures(media: ClipMedia, cfg: SyncConfig) -> tuple[np.ndarray, np.ndarray]:
    """Presentation times [F] and (mouth, reference) per frame [F, 2], NaN where the tracker has no face."""
    tracker = faces.FaceTracker(LANDMARK_MODELS[cfg.landmarks], cfg.detect_every_frames)
    measure = lip_opening if cfg.landmarks == "68" else mouth_darkness
    times, values = [], []
    for frame in media.frames(short_side=ANALYSIS_SHORT_SIDE, grey=True, enlarge=False):
        times.append(frame.time)
        face = tracker(frame.image)
        values.append((np.nan, np.nan) if face is None else measure(frame.image, face))
    return np.array(times), np.array(values, dtype=np.float64).reshape(-1, 2)


def sync_signals(media: ClipMedia, cfg: SyncConfig) -> SyncSignals:
    """Face track, mouth and reference measures, speech envelope and lagged correlations of one clip.

    Raises NotApplicable without audio or video, with one frame or below `min_fps`, and without a face."""
    media.require(video=True, audio=True)
    missing = faces.dlib_missing(LANDMARK_MODELS[cfg.landmarks])
    if missing:
        raise RuntimeError(missing)
    times, measures = face_measures(media, cfg)
    if len(times) < 2:
        raise NotApplicable("one video frame: no motion to time")
    rate = frame_rate(times, 0.0)
    if rate < cfg.min_fps:
        raise NotApplicable(f"{rate:.1f} frames per second, below min_fps {cfg.min_fps:g}: "
                            "the mouth is not sampled often enough to time it")
    found = ~np.isnan(measures[:, 0])
    face_fraction = float(found.mean())
    if face_fraction < cfg.min_face_fraction:
        raise NotApplicable(f"no face (found in {face_fraction:.0%} of frames)")
    # Each frame is shown from its time until the next one's: its measure belongs to that interval's centre.
    durations = np.diff(times, append=times[-1] + np.median(np.diff(times)))
    centres = times + durations / 2
    grid = centres[0] + np.arange(int(np.floor((centres[-1] - centres[0]) * rate + 1e-6)) + 1) / rate
    mouth, reference = (np.interp(grid, centres[found], measures[found, k]) for k in range(2))
    envelope = speech_envelope(media.audio_16k, ASR_SAMPLE_RATE, grid - media.audio_start, cfg.envelope_window_ms)
    speech = voice_activity(envelope, cfg)
    max_lag = max(1, int(round(cfg.max_offset_ms / 1000 * rate)))
    width = max(1, int(round(cfg.detrend_seconds * rate)))
    window = dilate(speech, int(round(cfg.context_ms / 1000 * rate)))
    correlations = lagged_correlations(detrend(mouth, width), detrend(envelope, width), window, max_lag)
    return SyncSignals(rate, grid, mouth, reference, envelope, speech, max_lag, correlations, face_fraction,
                       MOUTH_SIGNALS[cfg.landmarks])


@register
class AudioVideoSync(Metric):
    name = "sync"
    version = "5"
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
    description = ("lip sync on frame timestamps: dlib face tracker, lip opening from 68-point landmarks (or mouth "
                   "darkness, landmarks=5) vs speech envelope, cross-correlation within ±600 ms; summary: signed "
                   "median over confident clips, offset_ms > 0 = audio lags video")
    options_class = SyncConfig

    def weight_paths(self) -> list[Path]:
        return [faces.model_file(LANDMARK_MODELS[self.options.landmarks])] if self.unavailable() is None else []

    def unavailable(self) -> str | None:
        return faces.dlib_missing(LANDMARK_MODELS[self.options.landmarks])

    def score(self, clip: ClipContext) -> dict[str, Any]:
        cfg = self.options
        signals = sync_signals(clip.media, cfg)
        if signals.speech_seconds < cfg.min_speech_seconds:
            raise NotApplicable(f"no speech ({signals.speech_seconds:.2f} s of voice activity)")
        if signals.articulation < cfg.min_articulation:
            raise NotApplicable(f"no mouth motion during speech: the mouth moves {signals.articulation:.1f}× as much "
                                f"as the nose (landmark jitter, codec noise, head motion), below min_articulation "
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
                       "lag_step_ms": 1000.0 / signals.rate, "sign": "offset_ms > 0: audio lags video",
                       "mouth_signal": signals.mouth_signal},
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


def lip_opening(grey: np.ndarray, face: faces.TrackedFace) -> tuple[float, float]:
    """The inner lips' gap (the mean of points 61–63 to 67–65) over the mouth's width (corners 48 and 54), and the
    reference: the nose's length (27 to 33) over the outer eye corners' distance (36 to 45), a ratio of the same
    landmark model on a part of the face that does not articulate (landmark jitter, pose)."""
    points = face.points
    gap = np.linalg.norm(points[[61, 62, 63]] - points[[67, 66, 65]], axis=1).mean()
    width = max(np.linalg.norm(points[54] - points[48]), 1e-6)
    nose = np.linalg.norm(points[33] - points[27])
    eyes = max(np.linalg.norm(points[45] - points[36]), 1e-6)
    return float(gap / width), float(nose / eyes)


def mouth_darkness(grey: np.ndarray, face: faces.TrackedFace) -> tuple[float, float]:
    """1 − mean grey of the mouth region / mean grey of the face box (higher = darker = more open: an opening mouth
    shows its dark cavity; global lighting cancels out), and the same ratio for the nose band, the reference. The
    box is the tracker's, which dlib's 5 points (eyes, nose base) re-centre on every frame."""
    box, (height, width) = face.box, grey.shape
    whole = max(float(grey[_span(box.top, box.bottom, (0.0, 1.0), height),
                           _span(box.left, box.right, (0.0, 1.0), width)].mean()), 1.0)
    return tuple(1.0 - float(grey[_span(box.top, box.bottom, ys, height),
                                  _span(box.left, box.right, xs, width)].mean()) / whole
                 for xs, ys in ((MOUTH_X, MOUTH_Y), (NOSE_X, NOSE_Y)))


def _span(low: int, high: int, fractions: tuple[float, float], limit: int) -> slice:
    start = int(np.clip(round(low + fractions[0] * (high - low)), 0, limit - 1))
    return slice(start, int(np.clip(round(low + fractions[1] * (high - low)), start + 1, limit)))


def silent_motion_ratio(mouth: np.ndarray, speech: np.ndarray) -> float | None:
    """Mean |Δ openness| in silences (3 frames clear of speech) over that in speech; None without enough of either."""
    motion = np.abs(np.diff(mouth))
    silent = ~dilate(speech, 3)[1:]
    speaking = speech[1:]
    if silent.sum() < 5 or speaking.sum() < 5:
        return None
    speaking_motion = motion[speaking].mean()
    return float(motion[silent].mean() / speaking_motion) if speaking_motion > 1e-9 else None
