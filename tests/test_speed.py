"""Speed per 5 s of video from adapter timings, and the paper's speed table from a run's clip table."""
import io

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from mheval.media import ClipMedia
from mheval.metrics import ClipContext, NotApplicable, create_metric
from mheval.metrics.speed import speed_table
from mheval.report import speed_view
from mheval.results import RunResults
from mheval.runner import RunRequest, run
from mheval.suites import load_suite
from mheval.validate import ValidateConfig, Workspace

ITEM = load_suite("smoke").items[0]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return ClipMedia(Workspace(tmp_path_factory.mktemp("speed"), ValidateConfig()).puppet(ITEM))


def test_stage_times_are_scaled_to_a_five_second_clip(media):
    meta = {"timings": {"base": 1.0, "sr": 2.0, "decode": 0.5}, "wall_seconds": 4.0}
    result = create_metric("speed").score(ClipContext(media, ITEM, "m", meta))
    scale = 5.0 / media.seconds
    assert result["seconds_per_5s"] == pytest.approx(4.0 * scale)
    assert result["base_per_5s"] == pytest.approx(1.0 * scale)
    assert result["sr_per_5s"] == pytest.approx(2.0 * scale)
    assert result["decode_per_5s"] == pytest.approx(0.5 * scale)


def test_clips_without_generation_time_are_not_applicable(media):
    speed = create_metric("speed")
    with pytest.raises(NotApplicable, match="no generation time"):
        speed.score(ClipContext(media, ITEM, "m", {}))
    with pytest.raises(NotApplicable, match="imported"):
        speed.score(ClipContext(media, ITEM, "m", {"source": "/data/x.mp4", "wall_seconds": 0.01}))


def test_speed_table_puts_paper_stages_first_and_takes_medians():
    def row(model, seconds, timings, wall):
        meta = {"timings": timings, "wall_seconds": wall, "media": {"video_seconds": seconds, "width": 448,
                                                                     "height": 256}}
        return {"model": model, "clip_status": "ok", "meta": meta,
                **{f"time.{k}": v for k, v in timings.items()}, "time.total": wall}

    clips = pd.DataFrame([
        row("a", 2.5, {"warmup": 0.1, "decode": 0.2, "base": 1.0}, 1.5),
        row("a", 5.0, {"warmup": 0.1, "decode": 0.6, "base": 3.0}, 4.0),
        row("a", 10.0, {"warmup": 0.1, "decode": 0.8, "base": 4.0}, 6.0),
        row("b", 5.0, {"base": 1.0}, 1.0) | {"time.decode": np.nan, "time.warmup": np.nan},
        {"model": "b", "clip_status": "failed", "meta": {}, "time.total": np.nan},
    ])
    table = speed_table(clips)
    assert list(table.columns) == ["model", "resolution", "base", "decode", "warmup", "total", "clips"]
    first = table.iloc[0]
    assert first.model == "a" and first.resolution == "448x256" and first.clips == 3
    assert first.base == pytest.approx(2.0) and first.decode == pytest.approx(0.4)  # medians of 2,3,2 / .4,.6,.4
    assert first.total == pytest.approx(3.0)
    assert table.iloc[1].clips == 1 and np.isnan(table.iloc[1].decode)


def test_speed_table_from_a_puppet_run(tmp_path):
    outcome = run(RunRequest(suite="smoke", models=["puppet"], out=tmp_path / "run", metrics=["speed"],
                             limit=1, languages=["en", "de"], progress=False))
    scores = RunResults.from_store(outcome.store, outcome.record).clips
    table = speed_table(scores)
    assert table.clips.tolist() == [2]
    assert {"speech", "render", "encode", "total"} <= set(table.columns)
    assert (table[["speech", "render", "encode"]].sum(axis=1) <= table.total + 1e-9).all()
    assert (scores["speed.status"] == "ok").all() and (scores["speed.seconds_per_5s"] > 0).all()
    console = Console(file=io.StringIO(), width=120)
    console.print(speed_view(table))
    assert "seconds per 5-second clip" in console.file.getvalue()
