"""What the dashboard shows, as plain tables: no Streamlit here, so every number can be tested without a browser.

Everything is read through `mheval.results` and `mheval.baselines`, the same code the terminal report and the CI gate
use, so the dashboard can never disagree with them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import pandas as pd

from mheval.baselines import CannotCompare, Tolerance, check_comparable, compare_prompts, metric_scores
from mheval.metrics import PAPER_COLUMNS, metric_class, metric_names
from mheval.results import ALL, Reason, RunResults, distinct_notes, is_run_directory, model_label
from mheval.status import Status
from mheval.store import OldStoreError, RunRecord


@dataclass
class RunView:
    """One run directory as the dashboard sees it (`mheval.results.RunResults`, the metrics in paper order);
    `problem` is set when it cannot be shown at all."""

    directory: Path
    results: RunResults | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    record: RunRecord | None = None                                # the invocation shown (the latest)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)      # RunResults.clips
    metrics: list[str] = field(default_factory=list)               # scored and registered, paper order
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)    # RunResults.summary
    errors: pd.DataFrame = field(default_factory=pd.DataFrame)
    unavailable: dict[str, str] = field(default_factory=dict)      # metric → why it did not run
    notices: dict[str, str | None] = field(default_factory=dict)   # model → notice (tiny random weights)
    unregistered: list[str] = field(default_factory=list)          # scored by a metric this install does not know
    finished: bool = True
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def suite(self) -> str | None:
        return self.record.suite if self.record else None

    @property
    def state(self) -> str:
        """`unreadable`, `empty` (no clips), `failed` (no clip generated), `partial` or `ok`."""
        if self.problem is not None:
            return "unreadable"
        return self.results.state if self.results is not None else "empty"

    @property
    def message(self) -> str | None:
        """What a reader must know before looking at the numbers, or None when the run is complete."""
        state = self.state
        if state == "unreadable":
            return f"{self.directory}: {self.problem}"
        if state == "empty":
            return (f"{self.name}: this run has no clips yet. Generate them with "
                    f"`mheval run --suite {self.suite or 'SUITE'} --out {self.directory}`.")
        failed = int((self.table.clip_status != Status.OK).sum())
        if state == "failed":
            return f"{self.name}: every clip failed to generate ({failed} of {len(self.table)}); see the errors below."
        if state == "partial":
            parts = []
            if failed:
                parts.append(f"{failed} of {len(self.table)} clips failed to generate")
            for name in self.metrics:
                count = int((self.table.get(f"{name}.status") == Status.FAILED).sum())
                if count:
                    parts.append(f"{name} failed on {count} clip(s)")
            if not self.finished:
                parts.append("the last invocation did not finish (still running, or interrupted)")
            return f"{self.name}: partial results: " + "; ".join(parts) + ". Numbers cover what succeeded."
        return None

    def clip_path(self, row: pd.Series) -> Path | None:
        return self.directory / row["path"] if isinstance(row.get("path"), str) else None


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run directories named directly, or found one level below a directory of runs (e.g. `runs/`)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if is_run_directory(path) or not path.is_dir():
            found.append(path)
        else:
            below = sorted(child for child in path.iterdir() if is_run_directory(child))
            found.extend(below or [path])
    return list(dict.fromkeys(found))


def load_run(directory: Path | str) -> RunView:
    directory = Path(directory)
    if not is_run_directory(directory):
        reason = "does not exist" if not directory.exists() else "is not a run directory (no run database)"
        return RunView(directory, problem=reason)
    try:
        results = RunResults.load(directory)
    except ValueError as err:   # an older store schema (OldStoreError), or no invocation recorded yet
        if isinstance(err, OldStoreError):
            return RunView(directory, problem=str(err))
        return RunView(directory)
    return view_of(results)


def view_of(results: RunResults) -> RunView:
    return RunView(
        directory=results.directory,
        results=results,
        manifest=results.manifest,
        record=results.run,
        table=results.clips,
        metrics=ordered_metrics(results.metrics),
        summary=results.summary,
        errors=results.errors,
        unavailable=results.unavailable,
        notices=results.notices,
        unregistered=results.unregistered,
        finished=results.finished,
    )


def paper_groups(names: list[str]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The paper's leaderboard columns (in its order, then other columns metrics name) with the (metric, field)
    pairs of `names` that fill each; a column no metric fills has an empty list."""
    groups: dict[str, list[tuple[str, str]]] = {column: [] for column in PAPER_COLUMNS}
    for name in names:
        for column, field_name in metric_class(name).paper_fields().items():
            groups.setdefault(column, []).append((name, field_name))
    return list(groups.items())


def ordered_metrics(names: list[str]) -> list[str]:
    paper = [name for _, members in paper_groups(names) for name, _ in members]
    return list(dict.fromkeys(paper)) + sorted(set(names) - set(paper))


def column_label(metric: str) -> str:
    cls = metric_class(metric)
    arrow = cls.direction()
    name = metric if cls.headline == metric else f"{metric}.{cls.headline}"
    group = cls.paper_column
    return f"{group}: {name} {arrow}" if group and group != metric else f"{name} {arrow}"


def interval_text(low: float, high: float, digits: int = 3) -> str:
    return "–" if math.isnan(low) else f"[{low:.{digits}f}, {high:.{digits}f}]"


def leaderboard(view: RunView, language: str = ALL) -> pd.DataFrame:
    """One row per model: each metric's headline value and its 95% interval, prompts, failed clips."""
    rows = view.summary[view.summary.language == language] if not view.summary.empty else view.summary
    models = sorted(view.table.model.unique())
    board = pd.DataFrame({"model": [model_label(model, view.notices) for model in models]})
    for metric in view.metrics:
        mine = rows[rows.metric == metric].set_index("model").reindex(models)
        label = column_label(metric)
        board[label] = mine.value.to_numpy(dtype=float)
        board[f"{label} 95% CI"] = [interval_text(lo, hi) for lo, hi in zip(mine.ci_low, mine.ci_high)]
    clips = view.table if language == ALL else view.table[view.table.language == language]
    board["prompts"] = [clips[clips.model == m].item_id.nunique() for m in models]
    board["failed clips"] = [int((clips[clips.model == m].clip_status != Status.OK).sum()) for m in models]
    board["notes"] = ["; ".join(distinct_notes(rows[rows.model == m])) if not rows.empty else "" for m in models]
    return board


def leaderboard_text(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as the paper prints it: each metric's cell is "value [low, high]"."""
    text = board.copy()
    for column in [c for c in board.columns if f"{c} 95% CI" in board.columns]:
        text[column] = [("–" if math.isnan(value) else f"{value:.3f} {interval}").removesuffix(" –")
                        for value, interval in zip(board[column], board[f"{column} 95% CI"])]
        text = text.drop(columns=f"{column} 95% CI")
    return text


def metric_values(clips: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Every metric field of one prompt's clips: rows (metric, field), one column per model."""
    long = pd.concat([clip_metrics(row, metrics).assign(model=row["model"]) for _, row in clips.iterrows()])
    if long.empty:
        return pd.DataFrame(columns=["metric", "field"])
    wide = long.pivot_table(index=["metric", "field"], columns="model", values="value", aggfunc="first", sort=False)
    return wide.reset_index().rename_axis(columns=None)


def absent_paper_columns(view: RunView) -> list[str]:
    return [label for label, members in paper_groups(view.metrics) if not members]


def by_language(view: RunView, metric: str) -> pd.DataFrame:
    """model × language rows of one metric (without the `all` row), ready for a chart."""
    rows = view.summary[(view.summary.metric == metric) & (view.summary.language != ALL)]
    columns = ["model", "language", "value", "ci_low", "ci_high", "n", "ok", "not_applicable", "failed"]
    return rows[columns].assign(notes=["; ".join(notes) for notes in rows.notes])


def speed(view: RunView) -> pd.DataFrame:
    """The paper's speed table: seconds per 5-second clip per stage (base / SR / decode / …) and total."""
    from mheval.metrics.speed import speed_table

    if (view.table.get("clip_status", pd.Series(dtype=str)) == Status.OK).sum() == 0:
        return pd.DataFrame()
    return speed_table(view.table)


# -- drill-down ------------------------------------------------------------------------------------------------------

def clip_metrics(row: pd.Series, metrics: list[str]) -> pd.DataFrame:
    """Every metric field of one clip as (metric, field, value) rows, with the status where there is no value."""
    records = []
    for metric in metrics:
        status = row.get(f"{metric}.status", Status.MISSING)
        if status != Status.OK:
            records.append({"metric": metric, "field": "(status)",
                            "value": f"{status}: {reason_text(row, metric)}".rstrip(": ")})
            continue
        for name in metric_class(metric).fields:
            value = row.get(f"{metric}.{name}")
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                records.append({"metric": metric, "field": name, "value": f"{value:.4g}" if isinstance(
                    value, (float, np.floating)) else str(value)})
    return pd.DataFrame(records, columns=["metric", "field", "value"])


def reason_text(row: pd.Series, metric: str) -> str:
    """Why the metric has no value for this clip (not applicable, failed), as the metric said it."""
    detail = row.get(f"{metric}.detail")
    return detail.text if isinstance(detail, Reason) else ""


def detail_of(row: pd.Series, metric: str) -> Any:
    """The typed detail of an ok score (the metric's `detail_class`), or None."""
    detail = row.get(f"{metric}.detail")
    return None if row.get(f"{metric}.status") != Status.OK or isinstance(detail, Reason) else detail


@dataclass(frozen=True)
class AlignedToken:
    kind: str          # equal | substitute | delete | insert
    reference: str     # "" for insertions
    transcript: str    # "" for deletions


def align(reference: str, transcript: str, unit: str) -> list[AlignedToken]:
    """Edit alignment of normalised reference and transcript, by words or characters, as the WER counts it."""
    split = list if unit == "character" else str.split
    ref, hyp = split(reference.replace(" ", "") if unit == "character" else reference), split(
        transcript.replace(" ", "") if unit == "character" else transcript)
    if not ref or not hyp:
        return [AlignedToken("delete", token, "") for token in ref] + [AlignedToken("insert", "", t) for t in hyp]
    output = jiwer.process_words(" ".join(ref), " ".join(hyp))
    tokens = []
    for chunk in output.alignments[0]:
        refs = ref[chunk.ref_start_idx:chunk.ref_end_idx]
        hyps = hyp[chunk.hyp_start_idx:chunk.hyp_end_idx]
        if chunk.type == "insert":
            tokens += [AlignedToken("insert", "", token) for token in hyps]
        elif chunk.type == "delete":
            tokens += [AlignedToken("delete", token, "") for token in refs]
        else:
            tokens += [AlignedToken(chunk.type, r, h) for r, h in zip(refs, hyps)]
    return tokens


def waveform(audio: np.ndarray, sample_rate: int, bin_ms: float = 10.0) -> pd.DataFrame:
    """Peak amplitude per `bin_ms` of audio: a waveform light enough to draw."""
    size = max(1, int(sample_rate * bin_ms / 1000))
    bins = len(audio) // size
    peaks = np.abs(audio[: bins * size]).reshape(bins, size).max(axis=1) if bins else np.zeros(0)
    return pd.DataFrame({"seconds": np.arange(bins) * size / sample_rate, "peak": peaks, "trough": -peaks})


def sync_curves(path: Path, offset_ms: float | None, config: dict[str, Any] | None) -> pd.DataFrame:
    """On the sync metric's time grid, with the run's stored sync settings (`config`, from the manifest; None: the
    defaults): mouth opening and speech level, each scaled to [0, 1], and the speech level moved back by the
    measured offset (it should then follow the mouth). The signals come from `mheval.metrics.sync.sync_signals`,
    the same function the stored score came from.

    Raises NotApplicable when the metric could not measure the clip either (no face, no audio…), or when the
    stored settings belong to another version of the metric."""
    from mheval.media import ClipMedia
    from mheval.metrics import NotApplicable
    from mheval.metrics.options import parse_options
    from mheval.metrics.sync import SyncConfig, sync_signals

    try:
        settings = parse_options(SyncConfig, config or {})
    except (TypeError, ValueError) as err:
        raise NotApplicable(f"the run's sync settings are from another version of the metric ({err})") from None
    signals = sync_signals(ClipMedia(path), settings)
    seconds = signals.times - signals.times[0]
    level = _unit_range(signals.envelope)
    curves = pd.DataFrame({"seconds": seconds, "mouth": _unit_range(signals.mouth), "speech": level})
    if offset_ms is not None and not math.isnan(offset_ms):
        curves["speech − offset"] = np.interp(seconds + offset_ms / 1000, seconds, level, left=np.nan, right=np.nan)
    return curves


def _unit_range(values: np.ndarray) -> np.ndarray:
    low, high = np.nanmin(values), np.nanmax(values)
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


# -- run comparison --------------------------------------------------------------------------------------------------

def compare_runs(base: RunView, new: RunView, tolerance: Tolerance) -> tuple[pd.DataFrame, dict[str, str]]:
    """Per metric, model and language: change new − base on shared prompts with its paired 95% interval.

    Returns the table and, per metric that cannot be compared (another ASR, normaliser, version…), the reason."""
    rows, refused = [], {}
    for metric in [name for name in base.metrics if name in new.metrics]:
        try:
            old_scores, new_scores = metric_scores(base.results, metric), metric_scores(new.results, metric)
            check_comparable(old_scores, new_scores)
        except CannotCompare as err:
            refused[metric] = str(err)
            continue
        for row in compare_prompts(old_scores.prompts, new_scores.prompts, old_scores.lower_is_better, tolerance,
                                   unusable=new_scores.unusable):
            delta = row.delta
            rows.append({
                "metric": column_label(metric), "model": row.model, "language": row.language,
                "A (before)": row.baseline, "B (after)": row.current,
                "change": delta.value if delta else math.nan,
                "ci_low": delta.low if delta else math.nan, "ci_high": delta.high if delta else math.nan,
                "prompts": delta.n if delta else 0, "tolerance": row.threshold, "result": row.verdict,
                "notes": "; ".join(new_scores.notes.get((row.model, row.language), ())),
            })
    return pd.DataFrame(rows), refused
