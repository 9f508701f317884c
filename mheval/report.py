"""Terminal tables: the models × languages table of the primary metric, and every metric per model."""
from __future__ import annotations

import math

import pandas as pd
from rich.console import Console
from rich.table import Table

from mheval.results import ALL


def _cell(row: pd.Series | None, percent: bool) -> str:
    if row is None or math.isnan(row.value):
        return "–"
    scale, digits = (100.0, 1) if percent else (1.0, 3)
    text = f"{row.value * scale:.{digits}f}"
    if not math.isnan(row.ci_low):
        text += f" [{row.ci_low * scale:.{digits}f}, {row.ci_high * scale:.{digits}f}]"
    return text


def model_label(model: str, notices: dict[str, str | None]) -> str:
    notice = notices.get(model)
    return f"{model} ({notice})" if notice else model


def language_table(summary: pd.DataFrame, metric: str, notices: dict[str, str | None], percent: bool) -> Table:
    rows = summary[summary.metric == metric]
    languages = [lang for lang in dict.fromkeys(rows.language) if lang != ALL] + [ALL]
    unit = " (%)" if percent else ""
    table = Table(title=f"{metric}{unit} by language — value [95% CI]", show_lines=False)
    table.add_column("model", style="bold")
    for lang in languages:
        table.add_column(lang, justify="right")
    for model, group in rows.groupby("model", sort=True):
        by_language = {row.language: row for row in group.itertuples()}
        table.add_row(model_label(model, notices), *(_cell(by_language.get(lang), percent) for lang in languages))
    return table


def metrics_table(summary: pd.DataFrame, notices: dict[str, str | None], unavailable: dict[str, str]) -> Table:
    overall = summary[summary.language == ALL]
    metrics = list(dict.fromkeys(overall.metric))
    table = Table(title="all metrics, all languages — value [95% CI] (n prompts)")
    table.add_column("model", style="bold")
    for name in metrics:
        arrow = "↓" if overall[overall.metric == name].lower_is_better.any() else "↑"
        table.add_column(f"{name} {arrow}", justify="right")
    table.add_column("failed", justify="right")
    for model, group in overall.groupby("model", sort=True):
        by_metric = {row.metric: row for row in group.itertuples()}
        cells = []
        for name in metrics:
            row = by_metric[name]
            if name in unavailable:
                cells.append("unavailable")
            elif row.ok == 0 and row.not_applicable:
                cells.append("n/a")
            else:
                cells.append(f"{_cell(row, False)} ({row.n})")
        failed = max(row.failed for row in by_metric.values())
        table.add_row(model_label(model, notices), *cells, str(failed))
    return table


def print_report(summary: pd.DataFrame, notices: dict[str, str | None], unavailable: dict[str, str],
                 primary: str = "wer", console: Console | None = None) -> None:
    console = console or Console()
    if summary.empty:
        console.print("[yellow]no results to report[/yellow]")
        return
    if primary in set(summary.metric) and primary not in unavailable:
        console.print(language_table(summary, primary, notices, percent=True))
    console.print(metrics_table(summary, notices, unavailable))
    for name, reason in unavailable.items():
        console.print(f"[yellow]{name}: unavailable: {reason}[/yellow]")
