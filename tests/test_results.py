"""Summaries: the macro-averaged "all" row on prompts every model has (issue 12 item 8), notes for rows with few
prompts (item 11) and for speech decoded as another language (item 13), in the summary, exports, report and
dashboard."""
import json

import numpy as np
import pandas as pd
import pytest

from dashboards import data
from mheval.metrics.wer import WerDetail
from mheval.report import results_table
from mheval.results import ALL, Reason, RunResults, summary
from mheval.store import MetricKey, RunRecord


def clip_rows(model: str, language: str, rates, length: int, used: str | None = None, failed=()) -> list[dict]:
    """Scored clips of one model and language: WER `rates` over references of `length` units."""
    rows = []
    for index, rate in enumerate(rates):
        item = f"{language}-{index:02d}"
        ok = item not in failed
        rows.append({"model": model, "language": language, "item_id": item, "clip_status": "ok", "meta": "{}",
                     "wer.status": "ok" if ok else "failed", "wer.wer": rate if ok else np.nan,
                     "wer.reference_length": length if ok else np.nan,
                     "wer.detail": WerDetail(language_used=used or language) if ok else Reason("boom")})
    return rows


def results_of(directory, clips: pd.DataFrame) -> RunResults:
    """A RunResults over synthetic clips (one invocation that scored WER)."""
    record = RunRecord(1, 0.0, 1.0, "suite", "sha", 42, {model: {} for model in clips.model.unique()},
                       [MetricKey("wer", "v", "c", "w")], {})
    return RunResults(directory, record, clips.assign(seed=42, clip_error=None, path=None, sha256=None,
                                                      reference_text=""), pd.DataFrame(), pd.DataFrame(), [])


def row(table: pd.DataFrame, model: str, language: str) -> pd.Series:
    return table[(table.model == model) & (table.language == language) & (table.metric == "wer")].iloc[0]


def test_the_all_row_is_the_mean_over_languages_on_the_prompts_every_model_has():
    """Item 8: "all" used to pool CER and WER units (Japanese weighing 2.5× English) over a different prompt set
    per model."""
    clips = pd.DataFrame(
        clip_rows("a", "en", [0.1] * 6, 10) + clip_rows("a", "ja", [0.5] * 6, 25)
        + clip_rows("b", "en", [0.2] * 6, 10) + clip_rows("b", "ja", [0.6] * 6, 25, failed={"ja-04", "ja-05"}))
    table = summary(clips, ["wer"])
    for model, expected in (("a", 0.3), ("b", 0.4)):
        everything = row(table, model, ALL)
        assert everything.value == pytest.approx(expected) and everything.n == 10  # ja-04, ja-05 left out for both
        assert (everything.ci_low, everything.ci_high) == (pytest.approx(expected), pytest.approx(expected))
    assert "2 prompt(s) not scored for every model left out" in row(table, "a", ALL).notes
    assert row(table, "a", "ja").n == 6 and row(table, "b", "ja").n == 4  # language rows keep every prompt


def test_rows_with_fewer_than_five_prompts_are_flagged_in_summary_exports_report_and_dashboard(tmp_path):
    """Item 11: an interval from 2–4 prompts is little more than their range; every table says so."""
    clips = pd.DataFrame(clip_rows("a", "en", [0.1, 0.2, 0.3], 10) + clip_rows("a", "de", [0.1] * 5, 10))
    table = summary(clips, ["wer"])
    assert row(table, "a", "en").notes == ("n<5",) and row(table, "a", "de").notes == () \
        and row(table, "a", ALL).notes == ("n<5 per language",)   # English's 3 prompts add little variance
    (tmp_path / "run").mkdir()
    exports = results_of(tmp_path / "run", clips).export()
    assert "n<5" in set(pd.read_csv(exports / "summary.csv").notes.dropna())
    assert ["n<5"] in [row["notes"] for row in json.loads((exports / "results.json").read_text())["summary"]]
    cells = [cell for column in results_table(table, {}, {}).columns if column.header == "notes"
             for cell in column._cells]
    assert cells == ["", "n<5", "n<5 per language"]  # de, en, all
    view = data.RunView(tmp_path / "run", table=clips, metrics=["wer"], summary=table)
    assert list(data.leaderboard(view, "en").notes) == ["n<5"] and list(data.leaderboard(view).notes) == [
        "n<5 per language"]


def test_cantonese_decoded_as_mandarin_is_flagged_wherever_it_counts():
    """Item 13: a Whisper without `yue` transcribes Cantonese with the Mandarin decoder; the score records the
    language used and every table flags those rows."""
    clips = pd.DataFrame(clip_rows("a", "yue", [0.9] * 5, 20, used="zh") + clip_rows("a", "en", [0.1] * 5, 10))
    table = summary(clips, ["wer"])
    assert row(table, "a", "yue").notes == ("yue→zh ASR",) and row(table, "a", "en").notes == ()
    assert row(table, "a", ALL).notes == ("yue→zh ASR",)  # the mean over languages includes it
    view = data.RunView(data.Path("run"), table=clips, metrics=["wer"], summary=table)
    assert list(data.leaderboard(view, "yue").notes) == ["yue→zh ASR"]
    assert list(data.by_language(view, "wer").notes) == ["", "yue→zh ASR"]


def test_the_gate_table_carries_the_run_notes():
    """Item 13: the gate's table flags a Cantonese row decoded by Mandarin Whisper, like every other table."""
    from mheval.baselines import Tolerance, compare_prompts
    from mheval.gate import GateOutcome, markdown

    prompts = pd.DataFrame({"model": "m", "language": "yue", "item_id": [f"yue-{i}" for i in range(5)],
                            "item_sha256": "h", "value": 0.5, "weight": 10.0})
    outcome = GateOutcome("wer", Tolerance(), compare_prompts(prompts, prompts, True, Tolerance()),
                          notes={("m", "yue"): ("yue→zh ASR",)})
    assert "| pass | yue→zh ASR |" in markdown(outcome)


def test_a_metric_without_scores_summarises_to_empty_rows():
    """An unavailable metric (no column at all) still gets its rows, empty, so tables can say "unavailable"."""
    clips = pd.DataFrame(clip_rows("a", "en", [0.1] * 5, 10))
    table = summary(clips, ["wer", "clip_score"])
    unscored = table[table.metric == "clip_score"]
    assert list(unscored.language) == ["en", ALL] and unscored.n.tolist() == [0, 0] and not any(unscored.notes)
