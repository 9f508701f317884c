"""SyncNet LSE-C / LSE-D: the lip-sync numbers talking-head papers report, from `syncnet_v2.model`.

Weights: `syncnet.checkpoint=PATH` (a local file wins), else the pinned copy on the Hugging Face hub
(`SYNCNET_WEIGHTS`), fetched on first use when online or read from `--weights-dir` / the hub cache
(`mheval.weights`).

Follows the public syncnet_python pipeline (run_pipeline.py, SyncNetInstance.py) step by step:

1. Video to 25 fps by timestamp (as `ffmpeg -r 25` does: each 25 fps frame shows the source frame nearest its
   time, duplicating or dropping frames). Audio: 16 kHz mono on the int16 scale (what the reference's WAV holds).
2. Faces on every 25 fps frame, greedily tracked (IoU > 0.5 with the track's last box, gaps ≤ 25 frames, linearly
   interpolated); a track needs more than `min_track` frames and a mean box side above `min_face_size` pixels.
   Detector: OpenCV's Haar frontal-face cascade (`detect_faces` below),
   not S3FD, whose weights no package ships; Haar boxes are a little tighter than S3FD's, so crops are too.
3. Crop per frame: half-size s = max(w, h) / 2 around the box centre; s, x, y median-filtered (kernel 13, scipy's
   zero-padded `medfilt` as the reference); frame padded by int(1.8 s) with value 110; rows [y − s, y + 1.8 s],
   columns [x − 1.4 s, x + 1.4 s]; resized to 224×224 (bilinear); BGR 0–255 floats, not normalised.
   The reference writes the crops to an XVID video and re-reads them as JPEGs; here they stay uncompressed, which
   is one of the codec effects that move published LSE numbers by 0.1–1 (see the README).
4. Audio features: `python_speech_features.mfcc` with its defaults (the reference's own call): 25 ms windows,
   10 ms hop, pre-emphasis 0.97, 26 mel filters, nfft 512, 13 coefficients, lifter 22, c0 = log energy.
5. Windows: N = min(frames, ⌊samples / 640⌋) − 5; the lip tower sees frames [i, i+5), the audio tower MFCC
   columns [4i, 4i + 20); 1024-d embeddings, not normalised.
6. d[i, k] = ‖v_i − a_{i+k−15}‖ (audio zero-padded by 15 each side; torch's pairwise_distance, eps included);
   mdist = mean over i; LSE-D = min(mdist), LSE-C = median(mdist) − min(mdist); offset = 15 − argmin.

`offset_frames` keeps the reference's sign (positive: audio leads the video). `offset_ms` uses the `sync` metric's
sign (positive: audio lags the video), i.e. −40 · offset_frames, so the two metrics' offsets can be compared
directly (`mheval report` prints them side by side). One score per track; the clip's score is that of the track
with the highest LSE-C (the face whose lips the audio matches best: the speaker); every track is kept in `detail`.

Architecture: the layer list of syncnet_python's SyncNetModel (towers `netcnnaud`, `netcnnlip`, heads `netfcaud`,
`netfclip`), written from its documented shapes so that `syncnet_v2.model` loads with `strict=True`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mheval.media import ASR_SAMPLE_RATE, ClipMedia
from mheval.metrics import ClipContext, Metric, NotApplicable, register
from mheval.weights import HubFile, HubWeights, WeightsUnavailable

CASCADE_NAME = "haarcascade_frontalface_default.xml"
CASCADE_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")
DETECT_SHORT_SIDE = 180   # Haar detection runs on frames of this short side


def find_cascade() -> Path | None:
    """OpenCV's frontal-face Haar cascade, from opencv-python or Debian's opencv-data."""
    directories = [Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or "."), *map(Path, CASCADE_DIRS)]
    return next((d / CASCADE_NAME for d in directories if (d / CASCADE_NAME).is_file()), None)


@lru_cache(maxsize=1)
def load_cascade(path: Path) -> cv2.CascadeClassifier:
    return cv2.CascadeClassifier(str(path))


def detect_faces(detector: cv2.CascadeClassifier, grey: np.ndarray) -> np.ndarray:
    """Every face in a uint8 grey frame [H, W] as (x, y, w, h) rows in its pixels, shape [K, 4] float64 (Haar)."""
    side = max(24, min(grey.shape) // 6)
    found = detector.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    return np.asarray(found, dtype=np.float64).reshape(-1, 4)


SYNCNET_FPS = 25
CROP_SIZE = 224
PAD_VALUE = 110
CROP_SCALE = 0.4              # the reference's --crop_scale: the crop reaches 1 + 2·0.4 box half-sizes below centre
SMOOTH_KERNEL = 13
WINDOW_FRAMES = 5
MFCC_PER_FRAME = 4            # 100 MFCC columns per second / 25 frames per second
MFCC_WINDOW = 20
SAMPLES_PER_FRAME = ASR_SAMPLE_RATE // SYNCNET_FPS   # 640
EXTRA = "judges"
# syncnet_python's syncnet_v2.model (the file its download_model.sh fetches from robots.ox.ac.uk), as LatentSync's
# checkpoint repository mirrors it. The sha256 is the one the hub lists on the file's LFS page, and an independent
# mirror (lithiumice/models_hub_2, syncnet/syncnet_v2.model) lists the same; the revision is one whose auxiliary/
# folder holds the files of the "Upload checkpoints" commit. Not downloaded from here.
SYNCNET_WEIGHTS = HubWeights(
    repo="chunyu-li/LatentSync",
    revision="076ac7b2e5fdaeb8e8415d297fc750ab5be2ba61",
    files=(HubFile("auxiliary/syncnet_v2.model", "961e8696f888fce4f3f3a6c3d5b3267cf5b343100b238e79b2659bff2c605442"),),
    licence="MIT (joonson/syncnet_python, whose weights these are); the mirror repository is Apache-2.0",
    provenance="sha256 from the hub's LFS page of the file, matched by a second mirror; not downloaded here",
)


@dataclass(frozen=True)
class SyncNetConfig:
    checkpoint: str = field(default="", metadata={
        "help": "path of syncnet_v2.model (syncnet_python's weights); empty: the pinned hub copy (mheval weights)"})
    min_track: int = field(default=50, metadata={
        "help": "a face track needs more frames than this (syncnet_python: 100, which gives clips under 4 s no "
                "score; LatentSync's and MoChaBench's evaluators: 50)"})
    min_face_size: float = field(default=100.0, metadata={"help": "mean face box side in pixels a track needs"})
    max_offset_frames: int = field(default=15, metadata={"help": "offset search range, ± frames at 25 fps"})
    iou_threshold: float = field(default=0.5, metadata={"help": "a box joins a track above this IoU"})
    max_gap_frames: int = field(default=25, metadata={"help": "frames without a detection a track survives"})
    batch_size: int = field(default=20, metadata={"help": "windows per forward pass"})
    device: str = field(default="cpu", metadata={"help": "torch device for the network"})


def build_syncnet():
    """SyncNet's two towers and heads as torch modules; indices match the checkpoint's state-dict keys."""
    from torch import nn

    def conv2d(cin, cout, kernel=3, padding=1):
        return [nn.Conv2d(cin, cout, kernel, padding=padding), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    def conv3d(cin, cout, kernel, stride=1, padding=0):
        return [nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding), nn.BatchNorm3d(cout),
                nn.ReLU(inplace=True)]

    class SyncNet(nn.Module):
        def __init__(self):
            super().__init__()
            # audio: MFCC [B, 1, 13, 20] → [B, 512, 1, 1]
            self.netcnnaud = nn.Sequential(
                *conv2d(1, 64), nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),                       # 0-3
                *conv2d(64, 192), nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),                     # 4-7
                *conv2d(192, 384),                                                                      # 8-10
                *conv2d(384, 256),                                                                      # 11-13
                *conv2d(256, 256), nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),                    # 14-17
                *conv2d(256, 512, kernel=(5, 4), padding=(0, 0)),                                      # 18-20
            )
            self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 1024))
            # lips: BGR crops [B, 3, 5, 224, 224] → [B, 512, 1, 1, 1]
            self.netcnnlip = nn.Sequential(
                *conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2)),                                            # 0-2
                nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),                                  # 3
                *conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),                       # 4-6
                nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),              # 7
                *conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),                                        # 8-10
                *conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),                                        # 11-13
                *conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),                                        # 14-16
                nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),                                  # 17
                *conv3d(256, 512, (1, 6, 6)),                                                           # 18-20
            )
            self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 1024))

        def forward_aud(self, mfcc):      # [B, 1, 13, 20] → [B, 1024]
            return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

        def forward_lip(self, crops):     # [B, 3, 5, 224, 224] → [B, 1024]
            return self.netfclip(self.netcnnlip(crops).flatten(1))

    return SyncNet()


@lru_cache(maxsize=2)
def load_syncnet(checkpoint: Path, device: str):
    import torch

    model = build_syncnet()
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, OSError) as err:
        raise ValueError(f"{checkpoint}: not a SyncNet (syncnet_v2.model) state dict: {err}") from None
    return model.to(device).eval()


def resample_times(times: np.ndarray, frame_seconds: float, target_fps: float = SYNCNET_FPS) -> np.ndarray:
    """Which source frame each frame of a `target_fps` video over the same span shows, given the source frames'
    presentation times (seconds, increasing) and the last frame's duration: the one nearest its timestamp (ties: the
    earlier), so frames are duplicated or dropped by time, never by position (variable frame rates included)."""
    times = np.asarray(times, dtype=np.float64)
    count = max(1, int(round((times[-1] - times[0] + frame_seconds) * target_fps)))
    targets = times[0] + np.arange(count) / target_fps
    after = np.clip(np.searchsorted(times, targets), 0, len(times) - 1)
    before = np.clip(after - 1, 0, len(times) - 1)
    return np.where(targets - times[before] <= times[after] - targets, before, after)


def int16_scale(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] as the int16 values a 16-bit WAV holds (what the reference feeds its MFCC)."""
    return np.clip(np.round(audio.astype(np.float64) * 32768.0), -32768, 32767)


def mfcc_features(audio_int16: np.ndarray) -> np.ndarray:
    """[13, columns] MFCC, 100 columns per second, by the reference's own feature library and call."""
    try:
        import python_speech_features
    except ImportError:
        raise RuntimeError(f"python_speech_features is not installed: pip install 'mheval[{EXTRA}]'") from None
    return python_speech_features.mfcc(audio_int16, ASR_SAMPLE_RATE).T


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class FaceTrack:
    frames: np.ndarray   # [T] consecutive frame indices
    boxes: np.ndarray    # [T, 4] (x1, y1, x2, y2), interpolated over gaps


def track_faces(detections: list[np.ndarray], cfg: SyncNetConfig) -> list[FaceTrack]:
    """Greedy tracks over per-frame (x1, y1, x2, y2) detections [K, 4], as the reference's track_shot."""
    remaining = [list(boxes) for boxes in detections]
    tracks = []
    while True:
        frames, boxes = [], []
        for index, candidates in enumerate(remaining):
            if frames and index - frames[-1] > cfg.max_gap_frames:
                break
            for position, box in enumerate(candidates):
                if not frames or iou(box, boxes[-1]) > cfg.iou_threshold:
                    frames.append(index)
                    boxes.append(box)
                    del candidates[position]
                    break
        if not frames:
            return tracks
        if len(frames) <= cfg.min_track:
            continue
        every = np.arange(frames[0], frames[-1] + 1)
        found = np.array(boxes)
        filled = np.stack([np.interp(every, frames, found[:, k]) for k in range(4)], axis=1)
        if max(np.mean(filled[:, 2] - filled[:, 0]), np.mean(filled[:, 3] - filled[:, 1])) > cfg.min_face_size:
            tracks.append(FaceTrack(every, filled))


def smoothed_centres(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-size s and centre (x, y) per frame, median-filtered as the reference (zero-padded, kernel 13)."""
    from scipy.signal import medfilt

    half = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    return tuple(medfilt(values, kernel_size=SMOOTH_KERNEL) for values in (half, centre_x, centre_y))


def crop_region(frame_bgr: np.ndarray, half: float, centre_x: float, centre_y: float) -> np.ndarray:
    """The reference's crop before resizing: pad by int(1.8 s) with 110, rows [y−s, y+1.8s], cols [x−1.4s, x+1.4s]."""
    pad = int(half * (1 + 2 * CROP_SCALE))
    padded = np.pad(frame_bgr, ((pad, pad), (pad, pad), (0, 0)), mode="constant", constant_values=PAD_VALUE)
    y, x = centre_y + pad, centre_x + pad
    return padded[int(y - half):int(y + half * (1 + 2 * CROP_SCALE)),
                  int(x - half * (1 + CROP_SCALE)):int(x + half * (1 + CROP_SCALE))]


def crop_tracks(media: ClipMedia, source: np.ndarray, tracks: list[FaceTrack]) -> list[np.ndarray]:
    """[T, 224, 224, 3] BGR uint8 crops of each track, where `source[k]` is the clip's frame shown at 25-fps frame k;
    each native frame is decoded once and dropped after its crops are cut, so memory does not grow with the clip."""
    wanted: dict[int, list[tuple[int, int, float, float, float]]] = {}
    for number, track in enumerate(tracks):
        half, centre_x, centre_y = smoothed_centres(track.boxes)
        for position, frame in enumerate(track.frames):
            wanted.setdefault(int(source[frame]), []).append(
                (number, position, half[position], centre_x[position], centre_y[position]))
    crops = [np.empty((len(track.frames), CROP_SIZE, CROP_SIZE, 3), np.uint8) for track in tracks]
    for frame in media.frames():
        cuts = wanted.get(frame.index, ())
        bgr = cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR) if cuts else None
        for number, position, half, centre_x, centre_y in cuts:
            crops[number][position] = cv2.resize(crop_region(bgr, half, centre_x, centre_y), (CROP_SIZE, CROP_SIZE))
    return crops


def face_detections(media: ClipMedia, detector: cv2.CascadeClassifier) -> tuple[np.ndarray, list[np.ndarray]]:
    """Presentation times of the clip's frames, and the faces in each as (x0, y0, x1, y1) rows in native pixels,
    detected on grey frames at the `sync` metric's detection size."""
    times, detections = [], []
    for frame in media.frames(short_side=DETECT_SHORT_SIDE, grey=True, enlarge=False):
        times.append(frame.time)
        faces = detect_faces(detector, frame.image) * (media.info.width / frame.image.shape[1])
        detections.append(np.concatenate([faces[:, :2], faces[:, :2] + faces[:, 2:]], axis=1))
    return np.asarray(times), detections


def aligned_audio(media: ClipMedia, start: float) -> np.ndarray:
    """The 16 kHz audio with its first sample at presentation time `start` (trimmed, or padded with silence when the
    audio track starts later)."""
    audio, offset = media.audio_16k, int(round((start - media.audio_start) * ASR_SAMPLE_RATE))
    return audio[offset:] if offset >= 0 else np.concatenate([np.zeros(-offset, audio.dtype), audio])


def offset_distances(video_embeddings, audio_embeddings, max_offset: int):
    """[N, 2·max_offset + 1] distances d[i, k] = ‖v_i − a_{i+k−max_offset}‖, audio zero-padded at both ends."""
    import torch
    from torch.nn.functional import pad, pairwise_distance

    width = 2 * max_offset + 1
    padded = pad(audio_embeddings, (0, 0, max_offset, max_offset))
    return torch.stack([pairwise_distance(video_embeddings[[i], :].repeat(width, 1), padded[i:i + width, :])
                        for i in range(len(video_embeddings))])


def sync_scores(model, crops_bgr: np.ndarray, mfcc: np.ndarray, cfg: SyncNetConfig) -> dict[str, Any]:
    """LSE-D, LSE-C and offset of one track's crops [T, 224, 224, 3] against MFCC [13, C] starting at its frame 0."""
    import torch

    windows = min(len(crops_bgr), mfcc.shape[1] // MFCC_PER_FRAME) - WINDOW_FRAMES
    if windows < 1:
        raise NotApplicable(f"track too short for SyncNet ({len(crops_bgr)} frames)")
    video = torch.from_numpy(crops_bgr.astype(np.float32)).permute(3, 0, 1, 2)   # [3, T, 224, 224]
    audio = torch.from_numpy(mfcc.astype(np.float32))                            # [13, C]
    lips, sounds = [], []
    with torch.inference_mode():
        for start in range(0, windows, cfg.batch_size):
            starts = range(start, min(windows, start + cfg.batch_size))
            lip_batch = torch.stack([video[:, i:i + WINDOW_FRAMES] for i in starts]).to(cfg.device)
            audio_batch = torch.stack([audio[None, :, MFCC_PER_FRAME * i: MFCC_PER_FRAME * i + MFCC_WINDOW]
                                       for i in starts]).to(cfg.device)
            lips.append(model.forward_lip(lip_batch).float().cpu())
            sounds.append(model.forward_aud(audio_batch).float().cpu())
        distances = offset_distances(torch.cat(lips), torch.cat(sounds), cfg.max_offset_frames)
    mean_distance = distances.mean(dim=0)
    best = int(torch.argmin(mean_distance))
    minimum = float(mean_distance[best])
    return {"lse_d": minimum, "lse_c": float(torch.median(mean_distance)) - minimum,
            "offset_frames": cfg.max_offset_frames - best, "windows": windows,
            "mean_distance": [round(float(d), 4) for d in mean_distance]}


@register
class SyncNetLse(Metric):
    name = "syncnet"
    version = "1"
    inputs = ("video", "audio")
    fields = ("lse_c", "lse_d", "offset_frames", "offset_ms", "tracks")
    headline = "lse_c"
    paper_column = "sync"
    description = ("SyncNet LSE-C (confidence, higher better) and LSE-D (distance, lower better) from a local "
                   "syncnet_v2.model, syncnet_python's pipeline at 25 fps; offset_ms > 0 = audio lags video")
    options_class = SyncNetConfig
    hub_weights = SYNCNET_WEIGHTS

    def config(self) -> dict[str, Any]:
        settings = asdict(self.options)
        settings.pop("checkpoint")   # its sha256 is in weights(); the path itself does not change the numbers
        settings.pop("device")
        settings.pop("batch_size")
        return {**settings, "checkpoint_sha256": self.weights()[0].sha256 if self.weights() else None}

    def unavailable(self) -> str | None:
        try:
            import python_speech_features  # noqa: F401
        except ImportError:
            return f"python_speech_features is not installed (SyncNet's MFCC): pip install 'mheval[{EXTRA}]'"
        if find_cascade() is None:
            return f"{CASCADE_NAME} not found; install Debian's opencv-data (apt-get install opencv-data)"
        if not self.options.checkpoint:
            try:
                self.hub_folder()
            except WeightsUnavailable as error:
                return (f"SyncNet weights: {error}; or pass --metric-option syncnet.checkpoint=/path/to/"
                        f"syncnet_v2.model (the weights syncnet_python's download_model.sh fetches)")
            return None
        if not Path(self.options.checkpoint).expanduser().is_file():
            return (f"SyncNet checkpoint {self.options.checkpoint} does not exist; pass an existing file with "
                    f"--metric-option syncnet.checkpoint=PATH")
        return None

    def checkpoint_path(self) -> Path | None:
        """The explicit checkpoint, else the pinned hub copy (found or fetched); None when neither is there."""
        if self.options.checkpoint:
            path = Path(self.options.checkpoint).expanduser()
            return path if path.is_file() else None
        try:
            return self.hub_folder() / self.hub_weights.files[0].path
        except WeightsUnavailable:
            return None

    def weight_paths(self) -> list[Path]:
        path = self.checkpoint_path()
        return [path] if path else []

    def score(self, clip: ClipContext) -> dict[str, Any]:
        media, cfg = clip.media, self.options
        media.require(video=True, audio=True)
        times, detections = face_detections(media, load_cascade(find_cascade()))
        source = resample_times(times, 1 / media.fps)
        tracks = track_faces([detections[index] for index in source], cfg)
        if not tracks:
            raise NotApplicable(f"no face track of more than {cfg.min_track} frames with a mean side above "
                                f"{cfg.min_face_size:.0f} px in {len(source)} frames at 25 fps")
        checkpoint = self.checkpoint_path()
        if checkpoint is None:
            raise RuntimeError(self.unavailable())
        model = load_syncnet(checkpoint.resolve(), cfg.device)
        audio = int16_scale(aligned_audio(media, times[0]))
        results = []
        for track, crops in zip(tracks, crop_tracks(media, source, tracks)):
            # the reference cuts the audio to the track's span before computing its MFCC
            span = audio[int(track.frames[0]) * SAMPLES_PER_FRAME:(int(track.frames[-1]) + 1) * SAMPLES_PER_FRAME]
            result = sync_scores(model, crops, mfcc_features(span), cfg)
            results.append({**result, "first_frame": int(track.frames[0]), "frames": len(track.frames)})
        best = max(results, key=lambda result: result["lse_c"])
        return {"lse_c": best["lse_c"], "lse_d": best["lse_d"], "offset_frames": best["offset_frames"],
                "offset_ms": -1000.0 * best["offset_frames"] / SYNCNET_FPS, "tracks": len(tracks),
                "detail": {"tracks": results, "fps": SYNCNET_FPS,
                           "sign": "offset_frames > 0: audio leads (reference); offset_ms > 0: audio lags video"}}
