"""The daVinci-MagiHuman paper's comparison table (VideoScore2 visual quality / text alignment / physical
consistency on 1–5, and WER), per model over all prompts of a run, each with its 95% bootstrap interval; and the
SyncNet offset next to the landmark `sync` metric's. Printed by the report when those metrics are in the run."""
from __future__ import annotations

import math

import pandas as pd
from rich.console import Console
from rich.table import Table

from mheval.metrics import metric_class
from mheval.metrics.videoscore2 import PARSE_FAILURE_CODE
from mheval.results import estimate, model_label
from mheval.status import Status

JUDGE = "videoscore2"
PAPER_COLUMNS = (("visual_quality", "VQ ↑"), ("text_alignment", "TA ↑"), ("physical_consistency", "PC ↑"))
ONE_FRAME_MS = 40.0


def _interval(result, scale: float = 1.0, digits: int = 2) -> str:
    if math.isnan(result.value):
        return "–"
    text = f"{result.value * scale:.{digits}f}"
    if not math.isnan(result.low):
        text += f" [{result.low * scale:.{digits}f}, {result.high * scale:.{digits}f}]"
    return text


def _present(clips: pd.DataFrame, metric: str) -> bool:
    column = f"{metric}.status"
    return column in clips and clips[column].isin([Status.OK, Status.NOT_APPLICABLE]).any()


def paper_table(clips: pd.DataFrame, notices: dict[str, str | None] | None = None) -> Table | None:
    """VQ / TA / PC (VideoScore2, 1–5) and WER per model, value [95% CI over prompts]; None without the judge."""
    if clips.empty or not _present(clips, JUDGE):
        return None
    notices = notices or {}
    judge = metric_class(JUDGE)
    has_wer = "wer.status" in clips
    table = Table(title="the paper's table — VideoScore2 (1–5) and WER, value [95% CI over prompts]")
    table.add_column("model", style="bold")
    for _, header in PAPER_COLUMNS:
        table.add_column(header, justify="right")
    if has_wer:
        table.add_column("WER % ↓ (corpus)", justify="right")
    table.add_column("judged", justify="right")
    table.add_column("judge parse failures", justify="right")
    for model, group in clips[clips.clip_status == Status.OK].groupby("model", sort=True):
        cells = [_interval(estimate(group, judge, field)) for field, _ in PAPER_COLUMNS]
        if has_wer:
            cells.append(_interval(estimate(group, metric_class("wer")), scale=100.0, digits=1))
        status = group[f"{JUDGE}.status"]
        failures = sum(getattr(reason, "code", None) == PARSE_FAILURE_CODE
                       for reason in group[f"{JUDGE}.detail"][status == Status.NOT_APPLICABLE])
        table.add_row(model_label(model, notices), *cells, f"{int((status == Status.OK).sum())}/{len(group)}",
                      str(failures))
    return table


def sync_offsets_table(clips: pd.DataFrame, notices: dict[str, str | None] | None = None) -> Table | None:
    """Per model: SyncNet's offset beside the `sync` metric's offset (ms, audio lags > 0), and how often they agree."""
    if clips.empty or not (_present(clips, "sync") and _present(clips, "syncnet")):
        return None
    table = Table(title="lip-sync offsets — median ms (> 0: audio lags video); agree = within one 25 fps frame")
    for column in ("model", "sync offset", "syncnet offset", "agree", "LSE-C ↑", "LSE-D ↓"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model, group in clips.groupby("model", sort=True):
        both = group[(group.get("sync.status") == Status.OK) & (group.get("syncnet.status") == Status.OK)]
        sync = pd.to_numeric(both["sync.offset_ms"], errors="coerce")
        syncnet = pd.to_numeric(both["syncnet.offset_ms"], errors="coerce")
        agree = f"{int(((sync - syncnet).abs() <= ONE_FRAME_MS).sum())}/{len(both)}" if len(both) else "–"
        scored = metric_class("syncnet").scored_rows(group)
        medians = [pd.to_numeric(values, errors="coerce").median() for values in
                   (sync, syncnet, scored.get("syncnet.lse_c", pd.Series(dtype=float)),
                    scored.get("syncnet.lse_d", pd.Series(dtype=float)))]
        table.add_row(model_label(model, notices or {}), *(f"{m:.0f}" if not pd.isna(m) else "–" for m in medians[:2]), agree,
                      *(f"{m:.2f}" if not pd.isna(m) else "–" for m in medians[2:]))
    return table


def print_paper_tables(clips: pd.DataFrame | None, notices: dict[str, str | None], console: Console) -> None:
    """Print the paper's table and the sync-offset comparison when the run has the metrics they need."""
    if clips is None:
        return
    for table in (paper_table(clips, notices), sync_offsets_table(clips, notices)):
        if table is not None:
            console.print(table)
