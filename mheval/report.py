"""The terminal report.

Compact (the end of `mheval run`, and `mheval report`), made to fit a 100-column terminal:
1. WER/CER: one line per model, one column per language (then "all"), each cell the corpus value with a compact
   interval, `12 ±4` (± half the width of the 95% bootstrap interval over prompts);
2. the other metrics' headlines over all languages, one line per model, with the failed-clip count;
3. unavailable metrics, once each, with their reason; then footnotes: every flag of the summary's `notes` column
   (`n<5`, `yue→zh ASR`, …) and every model notice (tiny random weights) as a numbered marker.
Wide (`mheval report --wide`, and the exports): one row per model and language, one column per metric with both
interval bounds and WER's per-utterance mean, then the paper's speed table.
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table

from mheval.languages import LANGUAGES
from mheval.metrics import metric_class
from mheval.metrics.speed import speed_table
from mheval.paper_table import print_paper_tables
from mheval.results import ALL, RunResults, model_label
from mheval.verdicts import Verdicts, verdict_lines, verdicts

COMPACT_WIDTH = 100  # the compact report fits this many columns; a pipe or file gets exactly this width
WIDE_WIDTH = 200
SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
NOTE_EXPLANATIONS = {
    "n<5": "fewer than 5 prompts: the interval is little more than the min–max range",
    "n<5 per language": "a language with fewer than 5 prompts: the interval understates the uncertainty "
                        "(too few prompts to trust it)",
    "yue→zh ASR": "Cantonese transcribed by a Mandarin decoder (this Whisper model has no yue)",
}


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
    percent = metric_class(row.metric).percent
    scale = 100.0 if percent else 1.0
    digits = 1 if percent else _digits(value)
    text = f"{value * scale:.{digits}f}"
    if not math.isnan(low):
        text += f"\n[{low * scale:.{digits}f}, {high * scale:.{digits}f}]"
    return text


def compact_value(row) -> str:
    """`12 ±4`: the value and half the width of its interval, 3 significant digits at most (percent for WER)."""
    if row is None:
        return "–"
    if row.ok == 0 and row.not_applicable:
        return "n/a"
    if math.isnan(row.value):
        return "–"
    scale = 100.0 if metric_class(row.metric).percent else 1.0
    value = row.value * scale
    magnitude = abs(value)
    digits = 0 if magnitude == 0 or magnitude >= 10 else 2 if magnitude < 1 else 1
    text = f"{value:.{digits}f}"
    if not math.isnan(row.ci_low):
        text += f" ±{(row.ci_high - row.ci_low) * scale / 2:.{digits}f}"
    return text


def row_notes(row) -> list[str]:
    """The flags of a summary row (none for a missing row)."""
    return list(getattr(row, "notes", None) or ())


class Footnotes:
    """Numbered markers, one per distinct note or model notice, in order of first use."""

    def __init__(self):
        self.texts: dict[str, str] = {}  # footnote text → marker

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts[text] = str(len(self.texts) + 1).translate(SUPERSCRIPTS)
        return self.texts[text]

    def marks(self, notes: list[str]) -> str:
        return "".join(self.mark(note) for note in notes)

    def lines(self) -> list[str]:
        return [f"{marker} {text}: {NOTE_EXPLANATIONS[text]}" if text in NOTE_EXPLANATIONS else f"{marker} {text}"
                for text, marker in self.texts.items()]


def _languages(rows: pd.DataFrame) -> list[str]:
    present = [lang for lang in dict.fromkeys(rows.language) if lang != ALL]
    return [lang for lang in LANGUAGES if lang in present] + sorted(set(present) - set(LANGUAGES)) + [ALL]


def _model_cell(model: str, notices: dict[str, str | None], footnotes: Footnotes) -> str:
    notice = notices.get(model)
    return model + footnotes.mark(f"{model}: {notice}") if notice else model


def compact_table() -> Table:
    return Table(box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False)


def language_metrics(summary: pd.DataFrame) -> list[str]:
    """The metrics of a summary that get their own models × languages table (`Metric.language_table`)."""
    return [name for name in dict.fromkeys(summary.metric) if metric_class(name).language_table]


def language_table(summary: pd.DataFrame, notices: dict[str, str | None], footnotes: Footnotes,
                   metric: str) -> tuple[str, Table] | None:
    """Models × languages for one metric, compact cells with note markers; with its title."""
    rows = summary[summary.metric == metric]
    if rows.empty:
        return None
    cls = metric_class(metric)
    unit = f"{metric.upper()} {cls.unit}".rstrip()
    if cls.name == "wer":
        character = [code for code, lang in LANGUAGES.items() if lang.character_level and code in set(rows.language)]
        unit += f" (CER for {' '.join(character)})" if character else ""
    how = "corpus value" if cls.weight_field else "value"
    title = f"{unit} {cls.direction()} by language: {how} ± half its 95% interval over prompts"
    table = compact_table()
    table.add_column("model", overflow="fold")
    languages = _languages(rows)
    for language in languages:
        table.add_column(language, justify="right", overflow="fold", style="bold" if language == ALL else None)
    for model, by_model in rows.groupby("model", sort=True):
        cells = {row.language: row for row in by_model.itertuples()}
        table.add_row(_model_cell(model, notices, footnotes), *(
            compact_value(cells.get(language)) + footnotes.marks(row_notes(cells.get(language)))
            for language in languages))
    return title, table


def headline_table(summary: pd.DataFrame, notices: dict[str, str | None], unavailable: dict[str, str],
                   footnotes: Footnotes, exclude: tuple[str, ...] = ()) -> tuple[Table | None, str]:
    """Each other available metric's headline over all languages, one line per model; and a legend line naming
    the field each column shows."""
    everything = summary[summary.language == ALL]
    metrics = [m for m in dict.fromkeys(everything.metric) if m not in exclude and m not in unavailable]
    if not metrics:
        return None, ""
    table = compact_table()
    table.add_column("model", overflow="fold")
    legend = []
    for name in metrics:
        first = everything[everything.metric == name].iloc[0]
        table.add_column(f"{name} {metric_class(name).direction()}", justify="right", overflow="fold")
        if first.field != name:
            legend.append(f"{name} = {first.field}")
    table.add_column("failed", justify="right")
    for model, by_model in summary.groupby("model", sort=True):
        cells = {row.metric: row for row in by_model[by_model.language == ALL].itertuples()}
        table.add_row(_model_cell(model, notices, footnotes),
                      *(compact_value(cells.get(name)) + footnotes.marks(row_notes(cells.get(name)))
                        for name in metrics),
                      str(int(by_model.failed.max())))
    return table, ("columns: " + ", ".join(legend)) if legend else ""


def results_table(summary: pd.DataFrame, notices: dict[str, str | None], unavailable: dict[str, str]) -> Table:
    """The wide table: one row per model and language, one column per metric, both interval bounds."""
    metrics = sorted(set(summary.metric), key=lambda name: (name in unavailable,
                                                             not metric_class(name).language_table, name))
    table = Table(title="results by model and language — value [95% CI over prompts]", show_lines=False)
    table.add_column("model", style="bold", overflow="fold")
    table.add_column("lang")
    table.add_column("prompts", justify="right")
    columns = []  # (metric, per-clip mean?)
    for name in metrics:
        columns.append((name, False))
        table.add_column(_header(summary, name), justify="right", overflow="fold")
        if metric_class(name).weight_field and name not in unavailable:
            columns.append((name, True))
            table.add_column(f"{name} % ↓\nutterance mean", justify="right", overflow="fold")
    table.add_column("notes", overflow="fold")
    table.add_column("failed", justify="right")
    for model, by_model in summary.groupby("model", sort=True):
        languages = [lang for lang in dict.fromkeys(by_model.language) if lang != ALL] + [ALL]
        for index, language in enumerate(languages):
            rows = by_model[by_model.language == language]
            cells = {row.metric: row for row in rows.itertuples()}
            notes = list(dict.fromkeys(note for row in rows.itertuples() for note in row_notes(row)))
            table.add_row(
                model_label(model, notices) if index == 0 else "",
                language,
                str(rows.n.max()),
                *("unavailable" if name in unavailable else _cell(cells.get(name), per_clip)
                  for name, per_clip in columns),
                ", ".join(notes),
                str(rows.failed.max()),
                end_section=language == ALL,
                style="bold" if language == ALL else None,
            )
    return table


def _header(summary: pd.DataFrame, metric: str) -> str:
    first = summary[summary.metric == metric].iloc[0]
    cls = metric_class(metric)
    unit = f" {cls.unit}" if cls.unit else ""
    field = "corpus" if cls.weight_field else first.field
    return f"{metric}{unit} {cls.direction()}\n{field}" if field != metric else f"{metric}{unit} {cls.direction()}"


def speed_view(speed: pd.DataFrame) -> Table:
    view = Table(title="speed — seconds per 5-second clip (median over clips)")
    for column in speed.columns:
        view.add_column(column, justify="left" if column in ("model", "resolution") else "right", overflow="fold")
    for row in speed.itertuples(index=False):
        view.add_row(*(value if isinstance(value, str) else "–" if pd.isna(value) else
                       str(value) if isinstance(value, (int, np.integer)) else f"{value:.2f}" for value in row))
    return view


def make_console(wide: bool = False) -> Console:
    """The terminal's width on a terminal (or $COLUMNS); in a pipe or file, the width the chosen layout is made for."""
    fixed = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=(WIDE_WIDTH if wide else COMPACT_WIDTH) if fixed else None)


def print_report(summary: pd.DataFrame, notices: dict[str, str | None], unavailable: dict[str, str],
                 clips: pd.DataFrame | None = None, console: Console | None = None, wide: bool = False) -> None:
    console = console or make_console(wide)
    if summary.empty:
        console.print("[yellow]no results to report[/yellow]")
        return
    if wide:
        console.print(results_table(summary, notices, unavailable))
        speed = speed_table(clips) if clips is not None and not clips.empty else pd.DataFrame()
        if not speed.empty:
            console.print(speed_view(speed))
        print_paper_tables(clips, notices, console)
        for name, reason in unavailable.items():
            console.print(f"{name}: unavailable: {reason}", style="yellow", highlight=False, markup=False)
        return
    footnotes = Footnotes()
    per_language = language_metrics(summary)
    for metric in per_language:
        by_language = language_table(summary, notices, footnotes, metric)
        if by_language is not None:
            title, table = by_language
            console.print(title, style="bold", highlight=False)
            console.print(table)
    others, legend = headline_table(summary, notices, unavailable, footnotes, exclude=tuple(per_language))
    if others is not None:
        console.print("other metrics over all languages: value ± half its 95% interval", style="bold",
                      highlight=False)
        console.print(others)
        if legend:
            console.print(legend, highlight=False)
    print_paper_tables(clips, notices, console)
    for name, reason in unavailable.items():
        console.print(f"{name}: unavailable: {reason}", style="yellow", highlight=False, markup=False)
    for line in footnotes.lines():
        console.print(line, highlight=False, markup=False)


def print_results(results: RunResults, console: Console | None = None, wide: bool = False) -> None:
    """The report of a run: which invocation the numbers come from, `print_report`, then the verdict block."""
    console = console or make_console(wide)
    console.print(results.describe(), highlight=False)
    print_report(results.summary, results.notices, results.unavailable, clips=results.clips, console=console,
                 wide=wide)
    if len(results.models) >= 2 and results.metrics:
        print_verdict_block(verdicts(results), console)


def print_verdict_block(table: Verdicts, console: Console) -> None:
    """Per model pair, the metrics and languages where one is better after the family adjustment (`mheval compare
    RUN_DIR` has every row)."""
    console.print(f"verdicts — {table.statement()}; every row: mheval compare", style="bold", highlight=False,
                  markup=False)
    for line in verdict_lines(table):
        console.print(line, highlight=False, markup=False)
