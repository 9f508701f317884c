"""The terminal report: one row per model and language, one column per metric, each value with its 95% interval."""
from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from mheval.metrics.speed import speed_table
from mheval.paper_table import print_paper_tables
from mheval.results import ALL

PERCENT_METRICS = {"wer"}
WEIGHTED_METRICS = {"wer"}  # summarised corpus-level; the per-utterance mean is shown beside it


def _digits(value: float) -> int:
    magnitude = abs(value)
    return 3 if magnitude < 10 else 2 if magnitude < 100 else 1


def _cell(row, per_clip: bool = False) -> str:
    """Value on the first line and its 95% interval below, so a wide table stays readable."""
    if row is None:
        return "–"
    if row.ok == 0 and row.not_applicable:
        return "n/a"
    value, low, high = (row.clip_mean, row.clip_mean_low, row.clip_mean_high) if per_clip else (
        row.value, row.ci_low, row.ci_high)
    if math.isnan(value):
        return "–"
    scale = 100.0 if row.metric in PERCENT_METRICS else 1.0
    digits = 1 if row.metric in PERCENT_METRICS else _digits(value)
    text = f"{value * scale:.{digits}f}"
    if not math.isnan(low):
        text += f"\n[{low * scale:.{digits}f}, {high * scale:.{digits}f}]"
    return text


def model_label(model: str, notices: dict[str, str | None]) -> str:
    notice = notices.get(model)
    return f"{model} ({notice})" if notice else model


def _header(summary: pd.DataFrame, metric: str) -> str:
    first = summary[summary.metric == metric].iloc[0]
    arrow = "↓" if first.lower_is_better else "↑"
    unit = " %" if metric in PERCENT_METRICS else ""
    field = "corpus" if metric in WEIGHTED_METRICS else first.field
    return f"{metric}{unit} {arrow}\n{field}" if field != metric else f"{metric}{unit} {arrow}"


def results_table(summary: pd.DataFrame, notices: dict[str, str | None], unavailable: dict[str, str],
                  primary: str = "wer") -> Table:
    metrics = sorted(set(summary.metric), key=lambda name: (name in unavailable, name != primary, name))
    table = Table(title="results by model and language — value [95% CI over prompts]", show_lines=False)
    table.add_column("model", style="bold")
    table.add_column("lang")
    table.add_column("prompts", justify="right")
    columns = []  # (metric, per-clip mean?)
    for name in metrics:
        columns.append((name, False))
        table.add_column(_header(summary, name), justify="right")
        if name in WEIGHTED_METRICS and name not in unavailable:
            columns.append((name, True))
            table.add_column(f"{name} % ↓\nutterance mean", justify="right")
    table.add_column("failed", justify="right")
    for model, by_model in summary.groupby("model", sort=True):
        languages = [lang for lang in dict.fromkeys(by_model.language) if lang != ALL] + [ALL]
        for index, language in enumerate(languages):
            rows = by_model[by_model.language == language]
            cells = {row.metric: row for row in rows.itertuples()}
            table.add_row(
                model_label(model, notices) if index == 0 else "",
                language,
                str(rows.n.max()),
                *("unavailable" if name in unavailable else _cell(cells.get(name), per_clip)
                  for name, per_clip in columns),
                str(rows.failed.max()),
                end_section=language == ALL,
                style="bold" if language == ALL else None,
            )
    return table


def speed_view(speed: pd.DataFrame) -> Table:
    view = Table(title="speed — seconds per 5-second clip (median over clips)")
    for column in speed.columns:
        view.add_column(column, justify="left" if column in ("model", "resolution") else "right")
    for row in speed.itertuples(index=False):
        view.add_row(*(value if isinstance(value, str) else "–" if pd.isna(value) else
                       str(value) if isinstance(value, (int, np.integer)) else f"{value:.2f}" for value in row))
    return view


def make_console() -> Console:
    """The terminal's width on a terminal; wide enough for the results table when written to a file or pipe."""
    return Console(width=None if sys.stdout.isatty() else 200)


def print_report(summary: pd.DataFrame, notices: dict[str, str | None], unavailable: dict[str, str],
                 clips: pd.DataFrame | None = None, primary: str = "wer", console: Console | None = None) -> None:
    console = console or make_console()
    if summary.empty:
        console.print("[yellow]no results to report[/yellow]")
        return
    console.print(results_table(summary, notices, unavailable, primary))
    speed = speed_table(clips) if clips is not None and not clips.empty else pd.DataFrame()
    if not speed.empty:
        console.print(speed_view(speed))
    print_paper_tables(clips, notices, console)
    for name, reason in unavailable.items():
        console.print(f"[yellow]{name}: unavailable: {reason}[/yellow]")
