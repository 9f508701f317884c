"""Visual quality without a model hub: BRISQUE with OpenCV's shipped model, and technical measures of the frames.

Frames are streamed (`ClipMedia.frames`), decoded one at a time straight to each measure's analysis size, so memory
does not grow with the clip; frames are sampled by presentation time, so a variable frame rate does not bias them.

`brisque`: OpenCV contrib's `quality.QualityBRISQUE` (an SVR on natural-scene statistics) with the LIVE model and
range files that Debian's `opencv-data` installs (/usr/share/opencv4/quality); lower is better, roughly 0–100 (a
clean photo ~0–20, heavy blur ~70+; flat synthetic images score high too). Scored on `frames_per_second` frames per
second of video, each scaled (area averaging down, bicubic up) so its short side is `analysis_short_side` pixels
(default 512): BRISQUE's statistics depend on the image's scale, so numbers at native sizes are not comparable
across models (the same content scores differently at 256p and 1080p). 512 is the short side of the LIVE images
the model was trained on (about 768×512) and a typical viewing size; a clip below it is enlarged, so a low-resolution
model pays for its resolution as a viewer at that size would see it. Mean and worst frame.

`technical`: measured on grey frames scaled to a 256-pixel short side, so that numbers do not depend on resolution:
- `frozen_ratio` (headline, lower is better): fraction of consecutive frame pairs in which the whole frame is static:
  fewer than `frozen_moving_fraction` of the pixels (default 0.02 %, ~23 pixels at 455×256) change by more than
  `frozen_pixel_change` grey levels (default 8; a frozen copy of a puppet clip changes by ≤ 2 after H.264). A still
  portrait whose mouth moves is not frozen while the mouth moves: the criterion counts moving pixels, it does not
  average the change over the frame (a mouth is ~0.5 % of it).
- `temporal_flicker`: mean absolute grey-level change between consecutive frames (0–255; motion counts too, so
  compare models on the same prompts; lower = steadier, 0 = frozen).
  With one frame there is no pair: `frozen_ratio` and `temporal_flicker` are None (not applicable), never 0 / 100 %.
- `sharpness` (diagnostic, not a ranking number): variance of the Laplacian; blur lowers it, but noise and grain
  raise it as much as real detail does, so a noisier model would rank as "sharper".
- `underexposed` / `overexposed`: fraction of pixels at grey ≤ 3 / ≥ 252 (clipped shadows / highlights).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mheval.metrics import ClipContext, Metric, register

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


@dataclass(frozen=True)
class BrisqueConfig:
    frames_per_second: float = 4.0
    analysis_short_side: int = 512   # every frame is scaled to this short side before scoring
    model_dir: str = ""  # a directory with brisque_model_live.yml and brisque_range_live.yml; empty: search


@register
class Brisque(Metric):
    name = "brisque"
    version = "2"
    inputs = ("video",)
    fields = ("brisque", "brisque_worst")
    headline = "brisque"
    lower_is_better = True
    paper_column = "visual quality"
    description = ("BRISQUE (OpenCV quality module, LIVE model from opencv-data) at a 512-pixel short side, mean and "
                   "worst sampled frame")
    options_class = BrisqueConfig

    def weight_paths(self) -> list[Path]:
        directory = brisque_directory(self.options.model_dir)
        return [directory / name for name in BRISQUE_FILES] if directory else []

    def unavailable(self) -> str | None:
        if not hasattr(cv2, "quality"):
            return "OpenCV has no quality module; install opencv-contrib-python-headless"
        if not self.weight_paths():
            return (f"{' and '.join(BRISQUE_FILES)} not found in cv2.data or {', '.join(BRISQUE_DIRS)}; install "
                    "Debian's opencv-data (apt-get install opencv-data) or pass --metric-option brisque.model_dir=DIR")
        return None

    def score(self, clip: ClipContext) -> dict[str, Any]:
        model, ranges = map(str, self.weight_paths())
        settings = self.options
        sampled = clip.media.frames(short_side=settings.analysis_short_side, every_seconds=1 / settings.frames_per_second)
        scored = [(frame.index, cv2.quality.QualityBRISQUE_compute(cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR),
                                                                   model, ranges)[0]) for frame in sampled]
        scores = np.array([score for _, score in scored])
        return {"brisque": float(scores.mean()), "brisque_worst": float(scores.max()),
                "detail": {"frames": [index for index, _ in scored]}}


@dataclass(frozen=True)
class TechnicalConfig:
    frozen_pixel_change: float = 8.0        # grey levels a pixel must change by to count as moving
    frozen_moving_fraction: float = 0.0002  # a frame pair with fewer moving pixels than this counts as frozen


@register
class TechnicalQuality(Metric):
    name = "technical"
    version = "2"
    inputs = ("video",)
    fields = ("frozen_ratio", "temporal_flicker", "sharpness", "underexposed", "overexposed")
    headline = "frozen_ratio"
    lower_is_better = True
    paper_column = "visual quality"
    description = ("frozen-frame ratio (whole frame static), temporal flicker, exposure clipping, and sharpness "
                   "(Laplacian variance, a diagnostic); on grey frames at a 256-pixel short side")
    options_class = TechnicalConfig

    def score(self, clip: ClipContext) -> dict[str, Any]:
        settings = self.options
        sharpness, dark, bright, changes, frozen = [], [], [], [], []
        previous = None
        for frame in clip.media.frames(short_side=ANALYSIS_SHORT_SIDE, grey=True):
            grey = frame.image
            current = grey.astype(np.int16)
            sharpness.append(cv2.Laplacian(grey, cv2.CV_64F).var())
            dark.append((grey <= DARK_LEVEL).mean())
            bright.append((grey >= BRIGHT_LEVEL).mean())
            if previous is not None:
                change = np.abs(current - previous)
                changes.append(change.mean())
                frozen.append((change > settings.frozen_pixel_change).mean() < settings.frozen_moving_fraction)
            previous = current
        temporal = bool(changes)
        return {
            "frozen_ratio": float(np.mean(frozen)) if temporal else None,
            "temporal_flicker": float(np.mean(changes)) if temporal else None,
            "sharpness": float(np.mean(sharpness)),
            "underexposed": float(np.mean(dark)),
            "overexposed": float(np.mean(bright)),
            "detail": {"frames": len(sharpness)} if temporal else {
                "frames": 1, "temporal": "not applicable: one frame, no frame pair to compare"},
        }
