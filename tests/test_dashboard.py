"""The Streamlit dashboard, page by page, with AppTest on real runs: complete, two-model, degraded, partial,
failed and empty, plus the plain-table helpers behind it."""
import re
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboards import data
from mheval.runner import RunRequest, run
from mheval.store import RunStore
from smoke_runs import degraded_german_run, export_clips, puppet_ci_run, puppet_smoke_run

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"
PAGES = ("leaderboard", "languages", "drilldown", "verdicts", "compare", "speed", "review")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Every kind of run the dashboard must survive, made once for the module."""
    base = tmp_path_factory.getbasetemp()
    smoke = puppet_smoke_run(base)
    made = {"smoke": smoke, "ci": puppet_ci_run(base), "degraded": degraded_german_run(base)}
    made["two_models"] = base / "two-models"
    run(RunRequest(suite="smoke", models=["puppet", "late=puppet"], model_options={"late": {"shift_ms": "200"}},
                   languages=["en", "de"], metrics=["sync"], out=made["two_models"], progress=False))
    half = export_clips(smoke, base / "half-clips")
    for clip in sorted(half.iterdir())[2:]:
        clip.unlink()
    made["partial"] = base / "partial"
    run(RunRequest(suite="smoke", models=[f"puppet=clips:{half}"], metrics=["technical"], out=made["partial"],
                   progress=False))
    (base / "no-clips").mkdir(exist_ok=True)
    made["failed"] = base / "failed"
    run(RunRequest(suite="smoke", models=[f"puppet=clips:{base / 'no-clips'}"], metrics=["technical"],
                   out=made["failed"], progress=False))
    made["empty"] = base / "empty"
    RunStore(made["empty"]).close()
    return made


def app(monkeypatch, *run_dirs: Path, page: str = "leaderboard") -> AppTest:
    monkeypatch.setattr(sys, "argv", ["app.py", *map(str, run_dirs)])
    test = AppTest.from_file(str(APP), default_timeout=180)
    test.query_params["page"] = page
    test.run()
    assert not test.exception, [e.value for e in test.exception]
    return test


def texts(test: AppTest, *kinds: str) -> str:
    return "\n".join(str(element.value) for kind in kinds for element in getattr(test, kind))


# -- the complete run, page by page ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_leaderboard_has_one_row_per_model_with_intervals_and_the_manifest(runs, monkeypatch):
    test = app(monkeypatch, runs["smoke"])
    board = test.dataframe[0].value
    assert list(board.model) == ["puppet"]
    view = data.load_run(runs["smoke"])
    wer = view.summary[(view.summary.metric == "wer") & (view.summary.language == "all")].iloc[0]
    assert board["WER: wer ↓"].iloc[0] == f"{wer.value:.3f} [{wer.ci_low:.3f}, {wer.ci_high:.3f}]"
    for column in ("visual quality: brisque ↓", "sync.offset_ms →0", "speed.seconds_per_5s ↓"):
        assert board[column].iloc[0].count("[") == 1
    assert board["prompts"].iloc[0] == 4 and board["failed clips"].iloc[0] == 0
    assert any("manifest.json" in expander.label for expander in test.expander)
    assert f"{view.record.describe()} · models puppet" in texts(test, "caption")  # which clips (issue 12 item 12)
    assert "physical consistency: no metric for it in this run." in texts(test, "caption")
    assert "clip_score: unavailable" in texts(test, "caption")
    test.selectbox(key="leaderboard_language").set_value("de").run()
    assert test.dataframe[0].value["prompts"].iloc[0] == 1


@pytest.mark.slow
def test_leaderboard_sorts_best_first_by_the_chosen_metric(runs, monkeypatch):
    test = app(monkeypatch, runs["two_models"])
    test.selectbox(key="leaderboard_sort").set_value("sync.offset_ms →0").run()
    assert list(test.dataframe[0].value.model) == ["puppet", "late"]  # 200 ms shift: worse sync
    test.toggle(key="leaderboard_best_first").set_value(False).run()
    assert list(test.dataframe[0].value.model) == ["late", "puppet"]


@pytest.mark.slow
def test_language_page_charts_each_language(runs, monkeypatch):
    test = app(monkeypatch, runs["smoke"], page="languages")
    test.selectbox(key="language_metric").set_value("wer").run()
    assert list(test.dataframe[0].value.language) == ["de", "en", "fr", "zh"]
    assert len(test.get("vega_lite_chart")) == 1
    assert "CER" in texts(test, "caption")


@pytest.mark.slow
def test_drilldown_shows_clip_transcript_differences_and_sync(runs, monkeypatch):
    test = app(monkeypatch, runs["degraded"], page="drilldown")
    test.selectbox(key="drilldown_item").set_value("de-platform-01").run()
    assert not test.exception
    markdown = texts(test, "markdown")
    assert "Der Zug hat schon wieder Verspätung." in markdown
    assert "background:#fecaca" in markdown or "background:#fde68a" in markdown  # noise made Whisper miss words
    assert test.get("video")
    test = app(monkeypatch, runs["two_models"], page="drilldown")
    offsets = [float(value) for value in re.findall(r"measured sync offset: ([+-]\d+) ms", texts(test, "markdown"))]
    assert len(offsets) == 2 and abs(offsets[0] - 200) <= 40 and abs(offsets[1]) <= 40  # late, puppet
    assert len(test.get("vega_lite_chart")) == 6  # waveform, mouth vs speech, correlation per clip


@pytest.mark.slow
def test_compare_highlights_the_degraded_language(runs, monkeypatch):
    test = app(monkeypatch, runs["ci"], runs["degraded"], page="compare")
    assert "1 regression(s): WER: wer ↓ puppet/de" in texts(test, "error")
    table = test.dataframe[0].value
    regressions = table[table.result == "regression"]
    assert list(zip(regressions.metric, regressions.language)) == [("WER: wer ↓", "de")]
    assert set(table.metric) == {"WER: wer ↓"} and set(table.prompts) == {5}


@pytest.mark.slow
def test_speed_and_review_pages(runs, monkeypatch):
    test = app(monkeypatch, runs["smoke"], page="speed")
    speed = test.dataframe[0].value
    assert list(speed.model) == ["puppet"] and {"render", "encode", "total"} <= set(speed.columns)
    test = app(monkeypatch, runs["smoke"], page="review")
    assert "No study in this run" in texts(test, "info")


@pytest.mark.slow
def test_verdicts_page_shows_a_pair_with_its_family_statement(runs, monkeypatch):
    """Issue 19 item 3: one pair at a time, every metric and language, and how the p-values were adjusted."""
    test = app(monkeypatch, runs["two_models"], page="verdicts")
    shown = test.dataframe[0].value
    assert set(shown.language) == {"en", "de", "all"} and set(shown.metric) == {"sync (|offset_ms − 0|)"}
    assert set(shown.verdict) == {"insufficient"}   # 1 prompt per language: never decided
    assert "Holm (family-wise error rate) over 0 comparison(s)" in texts(test, "caption")


def test_the_leaderboard_names_a_models_notice():
    """Issue 19: the dashboard never showed a model's "tiny random weights" notice."""
    import pandas as pd

    from mheval.results import summary
    from test_results import clip_rows

    clips = pd.DataFrame(clip_rows("magihuman", "en", [0.1] * 5, 10) + clip_rows("puppet", "en", [0.1] * 5, 10))
    view = data.RunView(Path("run"), table=clips, metrics=["wer"], summary=summary(clips, ["wer"]),
                        notices={"magihuman": "tiny random weights", "puppet": None})
    assert list(data.leaderboard(view).model) == ["magihuman (tiny random weights)", "puppet"]


# -- runs that went wrong ------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_partial_failed_empty_and_missing_runs_render_a_message_on_every_page(runs, monkeypatch, page, tmp_path):
    test = app(monkeypatch, runs["partial"], page=page)
    if page != "compare":
        assert "partial results: 2 of 4 clips failed to generate" in texts(test, "warning")
    for name, kind, message in (("failed", "error", "every clip failed to generate (4 of 4)"),
                                ("empty", "info", "this run has no clips yet")):
        test = app(monkeypatch, runs[name], page=page)
        if page != "compare":
            assert message in texts(test, kind)
    test = app(monkeypatch, tmp_path / "nowhere", page=page)
    if page != "compare":
        assert "does not exist" in texts(test, "error")


@pytest.mark.slow
def test_compare_refuses_runs_that_cannot_be_compared(runs, monkeypatch):
    test = app(monkeypatch, runs["smoke"], page="compare")
    assert "Load two runs" in texts(test, "info")
    test = app(monkeypatch, runs["smoke"], runs["failed"], page="compare")
    assert "every clip failed" in texts(test, "warning")


# -- helpers -------------------------------------------------------------------------------------------------------------

def test_alignment_marks_substitutions_deletions_and_insertions():
    tokens = data.align("der zug kommt heute", "der zog kommt nicht heute", "word")
    assert [(t.kind, t.reference, t.transcript) for t in tokens] == [
        ("equal", "der", "der"), ("substitute", "zug", "zog"), ("equal", "kommt", "kommt"),
        ("insert", "", "nicht"), ("equal", "heute", "heute")]
    assert [t.kind for t in data.align("今天下午", "今天上午", "character")] == ["equal", "equal", "substitute", "equal"]
    assert [t.kind for t in data.align("ab", "", "word")] == ["delete"]


def test_find_runs_expands_a_directory_of_runs(tmp_path):
    for name in ("b", "a"):
        RunStore(tmp_path / "runs" / name).close()
    (tmp_path / "runs" / "notes").mkdir()
    assert data.find_runs([tmp_path / "runs"]) == [tmp_path / "runs" / "a", tmp_path / "runs" / "b"]
    assert data.find_runs([tmp_path / "runs" / "a", tmp_path / "missing"]) == [tmp_path / "runs" / "a",
                                                                               tmp_path / "missing"]


def test_sync_curves_use_the_runs_stored_sync_settings(tmp_path):
    """Issue 12 item 19: the drill-down's curves come from the sync metric's own `sync_signals` with the settings
    the run stored, not from defaults, so they cannot disagree with the stored score."""
    from dataclasses import asdict

    import numpy as np

    from mheval.media import ClipMedia
    from mheval.metrics import NotApplicable
    from mheval.metrics.sync import SyncConfig, sync_signals
    from mheval.suites import load_suite
    from mheval.validate import ValidateConfig, Workspace

    item = load_suite("smoke").items[0]
    clip = Workspace(tmp_path, ValidateConfig()).puppet(item)
    stored = {**asdict(SyncConfig()), "envelope_window_ms": 200.0}
    curves = data.sync_curves(clip, 0.0, stored)
    signals = sync_signals(ClipMedia(clip), SyncConfig(envelope_window_ms=200.0))
    level = (signals.envelope - signals.envelope.min()) / np.ptp(signals.envelope)
    assert np.allclose(curves.speech, level) and np.allclose(curves["speech − offset"].dropna(), level)
    assert not np.allclose(data.sync_curves(clip, 0.0, None).speech, level)   # defaults: a 50 ms window
    with pytest.raises(NotApplicable, match="min_fps"):
        data.sync_curves(clip, None, {**stored, "min_fps": 30.0})
    with pytest.raises(NotApplicable, match="another version"):
        data.sync_curves(clip, None, {"max_offset_frames": 15})


def test_the_judge_fills_the_papers_physical_consistency_column():
    """Issue 19: the dashboard said physical consistency had no metric while the paper table took it from
    VideoScore2; both now read the column from the metric class."""
    view = data.RunView(Path("run"), metrics=["videoscore2", "wer"])
    absent = data.absent_paper_columns(view)
    assert "physical consistency" not in absent and "text alignment" not in absent and "sync" in absent
    assert data.absent_paper_columns(data.RunView(Path("run"), metrics=["wer"]))[:3] == [
        "visual quality", "text alignment", "physical consistency"]
