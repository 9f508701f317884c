"""Visual quality without a model hub: BRISQUE with OpenCV's shipped model, and technical measures of the frames.

`brisque`: OpenCV contrib's `quality.QualityBRISQUE` (an SVR on natural-scene statistics) with the LIVE model and
range files that Debian's `opencv-data` installs (/usr/share/opencv4/quality); lower is better, roughly 0–100 (a
clean photo ~0–20, heavy blur ~70+; flat synthetic images score high too). Scored on `frames_per_second` frames
evenly spread over the clip; mean and worst frame.

`technical`: measured on grey frames scaled to a 256-pixel short side, so that numbers do not depend on resolution:
- `sharpness`: variance of the Laplacian (higher = more fine detail; blur lowers it).
- `temporal_flicker`: mean absolute grey-level change between consecutive frames (0–255; motion counts too, so
  compare models on the same prompts; lower = steadier, 0 = frozen).
- `frozen_ratio`: fraction of consecutive frame pairs that differ by less than `frozen_threshold` grey levels on
  average (1.0 = a still image).
- `underexposed` / `overexposed`: fraction of pixels at grey ≤ 3 / ≥ 252 (clipped shadows / highlights).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mheval.metrics import ClipContext, Metric, WeightFile, register, sha256_file

BRISQUE_FILES = ("brisque_model_live.yml", "brisque_range_live.yml")
BRISQUE_DIRS = ("/usr/share/opencv4/quality", "/usr/share/opencv/quality", "/usr/local/share/opencv4/quality")
ANALYSIS_SHORT_SIDE = 256
DARK_LEVEL, BRIGHT_LEVEL = 3, 252


def brisque_directory(extra: str = "") -> Path | None:
    """The first directory holding both BRISQUE files: `extra`, next to the wheel's cv2.data, then Debian's."""
    wheel_data = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or ".")
    candidates = [Path(extra)] if extra else []
    candidates += [wheel_data, wheel_data / "quality", *map(Path, BRISQUE_DIRS)]
    return next((d for d in candidates if all((d / name).is_file() for name in BRISQUE_FILES)), None)


def sample_indices(frame_count: int, fps: float, per_second: float) -> np.ndarray:
    count = max(1, min(frame_count, int(round(frame_count / fps * per_second))))
    return np.unique(np.linspace(0, frame_count - 1, count).round().astype(int))


@dataclass(frozen=True)
class BrisqueConfig:
    frames_per_second: float = 4.0
    model_dir: str = ""  # a directory with brisque_model_live.yml and brisque_range_live.yml; empty: search


@register
class Brisque(Metric):
    name = "brisque"
    version = "1"
    inputs = ("video",)
    fields = ("brisque", "brisque_worst")
    headline = "brisque"
    lower_is_better = True
    description = "BRISQUE (OpenCV quality module, LIVE model from opencv-data), mean and worst sampled frame"
    options_class = BrisqueConfig

    def config(self) -> dict[str, Any]:
        return asdict(self.settings)

    def _files(self) -> list[Path]:
        directory = brisque_directory(self.settings.model_dir)
        return [directory / name for name in BRISQUE_FILES] if directory else []

    def weights(self) -> list[WeightFile]:
        return [WeightFile(str(path), sha256_file(path)) for path in self._files()]

    def unavailable(self) -> str | None:
        if not hasattr(cv2, "quality"):
            return "OpenCV has no quality module; install opencv-contrib-python-headless"
        if not self._files():
            return (f"{' and '.join(BRISQUE_FILES)} not found in cv2.data or {', '.join(BRISQUE_DIRS)}; install "
                    "Debian's opencv-data (apt-get install opencv-data) or pass --metric-option brisque.model_dir=DIR")
        return None

    def score(self, clip: ClipContext) -> dict[str, Any]:
        model, ranges = map(str, self._files())
        frames = clip.media.frames
        indices = sample_indices(len(frames), clip.media.fps, self.settings.frames_per_second)
        scores = np.array([
            cv2.quality.QualityBRISQUE_compute(cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR), model, ranges)[0]
            for i in indices
        ])
        return {"brisque": float(scores.mean()), "brisque_worst": float(scores.max()),
                "detail": {"frames": indices.tolist()}}


@dataclass(frozen=True)
class TechnicalConfig:
    frozen_threshold: float = 0.5  # mean grey-level change below which two consecutive frames count as identical


@register
class TechnicalQuality(Metric):
    name = "technical"
    version = "1"
    inputs = ("video",)
    fields = ("sharpness", "temporal_flicker", "frozen_ratio", "underexposed", "overexposed")
    headline = "sharpness"
    description = ("sharpness (Laplacian variance), temporal flicker, frozen-frame ratio, exposure clipping; "
                   "on grey frames at a 256-pixel short side")
    options_class = TechnicalConfig

    def config(self) -> dict[str, Any]:
        return asdict(self.settings)

    def score(self, clip: ClipContext) -> dict[str, Any]:
        grey = grey_frames(clip.media.frames)
        sharpness = np.mean([cv2.Laplacian(frame, cv2.CV_64F).var() for frame in grey])
        changes = np.abs(np.diff(grey.astype(np.float32), axis=0)).mean(axis=(1, 2))  # [F - 1]
        return {
            "sharpness": float(sharpness),
            "temporal_flicker": float(changes.mean()) if len(changes) else 0.0,
            "frozen_ratio": float((changes < self.settings.frozen_threshold).mean()) if len(changes) else 1.0,
            "underexposed": float((grey <= DARK_LEVEL).mean()),
            "overexposed": float((grey >= BRIGHT_LEVEL).mean()),
        }


def grey_frames(frames: np.ndarray) -> np.ndarray:
    """uint8 grey frames [F, h, w] scaled (area averaging) so the short side is 256 pixels."""
    height, width = frames.shape[1:3]
    scale = ANALYSIS_SHORT_SIDE / min(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.stack([cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), size, interpolation=interpolation)
                     for frame in frames])
