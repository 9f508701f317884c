"""The end-of-run report fits a 100-column terminal without truncating anything; `--wide` keeps the full table."""
import io
import json

import pandas as pd
import pytest
from rich.cells import cell_len
from rich.console import Console

from mheval.languages import LANGUAGES
from mheval.report import print_report
from mheval.metrics.wer import WerDetail
from mheval.results import ALL, summary

MODELS = {"puppet": None, "magihuman": "tiny random weights", "ltx-2.3-distilled": None}
OTHER_METRICS = {"sync": ("abs_offset_ms", True, 160.0), "brisque": ("brisque", True, 104.2),
                 "technical": ("sharpness", False, 1234.5), "speed": ("seconds_per_5s", True, 1797.8)}
UNAVAILABLE = {"clip_score": "no CLIP weights here: give --metric-option clip.pretrained=/path/open_clip_model.bin "
                             "(or let open_clip download them on a machine with internet)",
               "clip_iqa": "needs the same CLIP weights as clip_score"}


def row(model, language, metric, field, value, half, n=8, notes=(), lower=True):
    return {"model": model, "language": language, "metric": metric, "field": field, "value": value,
            "ci_low": value - half, "ci_high": value + half, "n": n, "clip_mean": value, "clip_mean_low": value - half,
            "clip_mean_high": value + half, "ok": n, "not_applicable": 0, "failed": 2, "lower_is_better": lower,
            "notes": notes}


@pytest.fixture
def worst_case_summary():
    """Every language, long model labels, WER over 100 % with wide intervals, large headline values, notes."""
    rows = []
    for model in MODELS:
        for language in [*LANGUAGES, ALL]:
            notes = (*(["n<5"] if language == "ko" else []), *(["yue→zh ASR"] if language == "yue" else []))
            rows.append(row(model, language, "wer", "wer", 1.042, 0.123, n=3 if language == "ko" else 8, notes=notes))
        for metric, (field, lower, value) in OTHER_METRICS.items():
            rows.append(row(model, ALL, metric, field, value, value / 7, lower=lower))
        for metric in UNAVAILABLE:
            rows.append({**row(model, ALL, metric, metric, float("nan"), float("nan"), n=0), "ok": 0})
    return pd.DataFrame(rows)


def render(summary_table, width, wide=False) -> str:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    print_report(summary_table, MODELS, UNAVAILABLE, console=console, wide=wide)
    return console.export_text()


def test_end_of_run_report_fits_100_columns_without_truncation(worst_case_summary):
    text = render(worst_case_summary, 100)
    lines = text.splitlines()
    assert max(cell_len(line) for line in lines) <= 100, "\n".join(l for l in lines if cell_len(l) > 100)
    assert "…" not in text
    header = next(line for line in lines if line.split()[:1] == ["model"] and "zh" in line)
    assert header.split() == ["model", *LANGUAGES, ALL]  # one column per language, each header whole
    assert next(line for line in lines if "sync →0" in line).split() == [
        "model", "sync", "→0", "brisque", "↓", "technical", "↓", "speed", "↓", "failed"]
    # one line per model in each table, the value with a compact interval and note markers
    wer_lines = [line for line in lines if "104 ±12" in line]
    assert len(wer_lines) == len(MODELS) and all(line.count("104 ±12") == len(LANGUAGES) + 1 for line in wer_lines)
    # unavailable metrics listed once underneath with their reason, never as columns
    assert sum("clip_score: unavailable" in line for line in lines) == 1 and "clip_score ↑" not in text
    assert "CLIP weights" in text
    footnotes = {line.split(" ", 1)[1].split(":")[0]: line[0] for line in lines if line[:1] in "¹²³⁴⁵"}
    assert set(footnotes) == {"magihuman", "yue→zh ASR", "n<5"}
    assert f"magihuman{footnotes['magihuman']}" in text and "tiny random weights" in text
    assert f"104 ±12{footnotes['n<5']}" in text


def test_wide_report_keeps_every_column(worst_case_summary):
    text = render(worst_case_summary, 250, wide=True)
    assert "utterance mean" in text and "unavailable" in text and "[91.9, 116.5]" in text
    assert "n<5" in text and "yue→zh ASR" in text


def test_summary_flags_small_rows_and_cantonese_read_as_mandarin():
    detail = WerDetail(language_used="zh")
    table = pd.DataFrame({
        "model": ["m"] * 3, "language": ["yue", "yue", "en"], "item_id": ["a", "b", "c"], "clip_status": ["ok"] * 3,
        "wer.status": ["ok"] * 3, "wer.wer": [0.5, 0.25, 0.0], "wer.reference_length": [4, 4, 3],
        "wer.detail": [detail, detail, WerDetail(language_used="en")],
    })
    notes = summary(table, ["wer"]).set_index("language").notes
    assert notes["yue"] == ("n<5", "yue→zh ASR") and notes["en"] == ("n<5",)
    assert notes[ALL] == ("n<5", "yue→zh ASR")   # the macro all row averages the Cantonese row in, so it carries the flag


def test_an_unavailable_reason_is_printed_as_written(worst_case_summary):
    """A reason naming an extra, `pip install 'mheval[judges]'`, reached the terminal as `pip install 'mheval'`: the
    brackets were read as a style."""
    console = Console(width=100, file=io.StringIO(), record=True, color_system=None)
    print_report(worst_case_summary, MODELS, {**UNAVAILABLE, "clip_score": "pip install 'mheval[judges]' [bold]"},
                 console=console)
    assert "pip install 'mheval[judges]' [bold]" in console.export_text()
