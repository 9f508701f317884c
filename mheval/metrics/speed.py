"""Generation speed from adapter metadata, normalised to a 5-second clip as in the paper's speed table.

Adapters report `meta["timings"]` (seconds per stage) and the runner measures `meta["wall_seconds"]` around the
whole generation. The paper's stages are text encoding, base denoising, super-resolution, decode and audio decode
(keys `text_encoding`, `base`, `sr`, `decode`, `audio_decode`); other stage names an adapter reports are kept as
they are. Every number is seconds × 5 / (clip duration in seconds): the time a 5-second clip would take at the same
rate. `speed_table` turns a results clip table into the paper's table (one row per model and resolution, median
over clips).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mheval.metrics import ClipContext, Metric, NotApplicable, register
from mheval.status import Status

REFERENCE_SECONDS = 5.0
PAPER_STAGES = ("text_encoding", "base", "sr", "decode", "audio_decode")


def per_reference_clip(seconds: float, video_seconds: float) -> float:
    return seconds * REFERENCE_SECONDS / video_seconds


@register
class GenerationSpeed(Metric):
    name = "speed"
    version = "1"
    inputs = ("adapter_timings",)
    fields = ("seconds_per_5s", *(f"{stage}_per_5s" for stage in PAPER_STAGES))
    headline = "seconds_per_5s"
    lower_is_better = True
    unit = "s"
    paper_column = "speed"
    description = "generation wall time and per-stage times (adapter timings) per 5 s of video"

    def score(self, clip: ClipContext) -> dict[str, Any]:
        meta = clip.meta
        if "wall_seconds" not in meta:
            raise NotApplicable("no generation time recorded for this clip")
        if "source" in meta and "timings" not in meta:
            raise NotApplicable("clip was imported from a folder, not generated here: its generation time is unknown")
        video_seconds = clip.media.seconds
        result = {"seconds_per_5s": per_reference_clip(meta["wall_seconds"], video_seconds)}
        for stage, seconds in meta.get("timings", {}).items():
            result[f"{stage}_per_5s"] = per_reference_clip(seconds, video_seconds)
        result["detail"] = {"video_seconds": video_seconds, "wall_seconds": meta["wall_seconds"],
                            "timings": meta.get("timings", {})}
        return result


def speed_table(clips: pd.DataFrame) -> pd.DataFrame:
    """The paper's speed table from `mheval.results.clip_table`: per model and resolution, the median over generated
    clips of each stage's seconds per 5 s of video (paper stages first, then the adapter's own), then total."""
    generated = clips[clips.clip_status == Status.OK]
    media = generated.meta.map(lambda meta: meta.get("media", {}) if isinstance(meta, dict) else {})
    video_seconds = media.map(lambda info: info.get("video_seconds", np.nan)).astype(float)
    resolution = media.map(lambda info: f"{info.get('width', '?')}x{info.get('height', '?')}")
    stages = [column.removeprefix("time.") for column in generated.columns if column.startswith("time.")]
    ordered = [s for s in PAPER_STAGES if s in stages] + [s for s in stages if s not in PAPER_STAGES + ("total",)]
    per_5s = pd.DataFrame({
        stage: pd.to_numeric(generated[f"time.{stage}"], errors="coerce") * REFERENCE_SECONDS / video_seconds
        for stage in [*ordered, "total"]
    })
    per_5s.insert(0, "resolution", resolution)
    per_5s.insert(0, "model", generated.model)
    table = per_5s.groupby(["model", "resolution"], sort=True).median()
    table["clips"] = per_5s.groupby(["model", "resolution"], sort=True).size()
    return table.reset_index()
