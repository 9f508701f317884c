"""The paper's VQ / TA / PC / WER table and the sync-offset comparison, from a clip table made in the test."""
import pandas as pd
from rich.console import Console

from mheval.metrics.videoscore2 import PARSE_FAILURE_CODE, JudgeDetail
from mheval.paper_table import paper_table, print_paper_tables, sync_offsets_table
from mheval.results import Reason


def clips_table() -> pd.DataFrame:
    rows = []
    for model, base, wer in (("ltx", 4, 0.2), ("magihuman", 5, 0.1)):
        for index in range(6):
            failed = model == "ltx" and index == 5
            rows.append({
                "model": model, "item_id": f"en-{index}", "clip_status": "ok",
                "videoscore2.status": "not_applicable" if failed else "ok",
                "videoscore2.detail": Reason("judge output parse failure (no visual quality score): 'x'",
                                             PARSE_FAILURE_CODE) if failed else JudgeDetail(),
                "videoscore2.visual_quality": None if failed else base - index % 2,
                "videoscore2.text_alignment": None if failed else base,
                "videoscore2.physical_consistency": None if failed else 3,
                "wer.status": "ok", "wer.wer": wer, "wer.reference_length": 10,
                "sync.status": "ok", "sync.offset_ms": 40.0 * (index % 2),
                "syncnet.status": "ok", "syncnet.offset_ms": 40.0 if model == "ltx" else 120.0,
                "syncnet.lse_c": 7.0, "syncnet.lse_d": 7.5,
            })
    return pd.DataFrame(rows)


def render(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_paper_table_has_each_score_with_its_interval_wer_and_parse_failures():
    text = render(paper_table(clips_table(), {"ltx": None, "magihuman": "tiny random weights"}))
    ltx = next(line for line in text.splitlines() if line.startswith("│ ltx"))
    assert "3.60 [" in ltx          # VQ over the 5 judged clips: 4, 3, 4, 3, 4
    assert "4.00" in ltx and "3.00" in ltx and "20.0 [" in ltx
    assert "5/6" in ltx and ltx.rstrip(" │").endswith("1")   # judged, and one parse failure
    assert "magihuman (tiny random weights)" in text
    assert "VQ ↑" in text and "WER % ↓" in text


def test_no_judge_no_paper_table_and_offsets_side_by_side():
    clips = clips_table()
    assert paper_table(clips.drop(columns=[c for c in clips if c.startswith("videoscore2.")])) is None
    text = render(sync_offsets_table(clips))
    ltx = next(line for line in text.splitlines() if line.startswith("│ ltx"))
    assert "6/6" in ltx             # syncnet 40 ms vs sync 0 or 40 ms: all within one frame
    magi = next(line for line in text.splitlines() if line.startswith("│ magihuman"))
    assert "0/6" in magi and "120" in magi


def test_print_is_silent_without_the_metrics():
    console = Console(width=200, record=True)
    print_paper_tables(pd.DataFrame({"model": ["a"], "clip_status": ["ok"]}), {}, console)
    print_paper_tables(None, {}, console)
    assert console.export_text() == ""
