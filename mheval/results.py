"""Results as tables: one row per clip with every metric's fields, and summaries with bootstrap intervals.

Shared by the terminal report, the exports, the gate and the dashboard, so they can never disagree.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mheval.metrics import Metric, metric_class
from mheval.stats import Estimate, bootstrap
from mheval.store import RunStore, write_bytes_atomic, write_json_atomic

ALL = "all"


@dataclass(frozen=True)
class MetricKey:
    """Which stored scores belong to a metric: its name, version and config hash."""

    name: str
    version: str
    config_hash: str

    @classmethod
    def of(cls, metric: Metric) -> "MetricKey":
        return cls(metric.name, metric.version, metric.config_hash())


def latest_metric_keys(store: RunStore) -> list[MetricKey]:
    """For reading a run without its invocation: the most recently written version/config of each metric."""
    scores = store.scores()
    if scores.empty:
        return []
    latest = scores.sort_values("created").groupby("metric").tail(1)
    return [MetricKey(r.metric, r.metric_version, r.config_hash) for r in latest.itertuples()]


def clip_table(store: RunStore, suite: str | None = None, models: list[str] | None = None,
               keys: list[MetricKey] | None = None, seed: int | None = None) -> pd.DataFrame:
    """One row per clip: model, item, language, status, timings, and `<metric>.<field>` / `<metric>.status` columns."""
    clips = store.clips(suite, models)
    if seed is not None:
        clips = clips[clips.seed == seed]
    items = store.items(suite)[["suite", "item_id", "language", "reference_text"]]
    table = clips.merge(items, on=["suite", "item_id"], how="left")
    table = table.rename(columns={"status": "clip_status", "error": "clip_error"})
    table = pd.concat([table.reset_index(drop=True), _timing_columns(table.meta)], axis=1)
    keys = latest_metric_keys(store) if keys is None else keys
    scores = store.scores()
    for key in keys:
        table = _attach_metric(table, scores, key)
    return table


def _timing_columns(meta: pd.Series) -> pd.DataFrame:
    rows = []
    for text in meta:
        data = json.loads(text) if isinstance(text, str) else {}
        row = {f"time.{stage}": seconds for stage, seconds in data.get("timings", {}).items()}
        row["time.total"] = data.get("wall_seconds", np.nan)
        row["notice"] = data.get("notice")
        rows.append(row)
    return pd.DataFrame(rows, index=range(len(rows)))


def _attach_metric(table: pd.DataFrame, scores: pd.DataFrame, key: MetricKey) -> pd.DataFrame:
    mine = scores[(scores.metric == key.name) & (scores.metric_version == key.version)
                  & (scores.config_hash == key.config_hash)]
    columns = {}
    for row in mine.itertuples():
        values = {f"{key.name}.{field}": value for field, value in json.loads(row.fields).items()}
        values[f"{key.name}.status"] = row.status
        values[f"{key.name}.detail"] = row.detail
        columns[row.clip_sha256] = values
    attached = pd.DataFrame.from_dict(columns, orient="index")
    if attached.empty:
        table[f"{key.name}.status"] = "missing"
        return table
    table = table.merge(attached, left_on="sha256", right_index=True, how="left")
    table[f"{key.name}.status"] = table[f"{key.name}.status"].fillna("missing")
    return table


def estimate(table: pd.DataFrame, metric: type[Metric] | Metric, field: str | None = None,
             weighted: bool = True) -> Estimate:
    """Summary of one metric field over the clips in `table`, with a bootstrap interval over prompts.

    The headline of a metric with a `weight_field` is weighted (corpus-level WER) unless `weighted` is False
    (the per-utterance mean)."""
    column = f"{metric.name}.{field or metric.headline}"
    rows = table[table.get(f"{metric.name}.status") == "ok"] if f"{metric.name}.status" in table else table.iloc[:0]
    if column not in rows or rows.empty:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    weights = None
    if weighted and metric.weight_field and field in (None, metric.headline):
        weights = pd.to_numeric(rows[f"{metric.name}.{metric.weight_field}"], errors="coerce").to_numpy()
    values = pd.to_numeric(rows[column], errors="coerce").to_numpy()
    return bootstrap(rows.item_id.to_numpy(), values, weights)


def summary(table: pd.DataFrame, metric_names: list[str]) -> pd.DataFrame:
    """Long table: model × language (and language "all") × metric → value, 95% interval, n prompts, clip counts.

    `value` is the metric's summary (corpus-level for weighted metrics such as WER); `clip_mean` is the mean of
    per-clip values (for WER: the per-utterance mean), each with its interval."""
    rows = []
    for (model, language), group in _groups(table):
        for name in metric_names:
            metric = metric_class(name)
            result = estimate(group, metric)
            per_clip = estimate(group, metric, weighted=False)
            status = group.get(f"{name}.status", pd.Series(dtype=str))
            rows.append({
                "model": model, "language": language, "metric": name, "field": metric.headline,
                "value": result.value, "ci_low": result.low, "ci_high": result.high, "n": result.n,
                "clip_mean": per_clip.value, "clip_mean_low": per_clip.low, "clip_mean_high": per_clip.high,
                "ok": int((status == "ok").sum()), "not_applicable": int((status == "not_applicable").sum()),
                "failed": int((status == "failed").sum()) + int((group.clip_status != "ok").sum()),
                "lower_is_better": metric.lower_is_better,
                "notes": "; ".join(_notes(group, name, language, result.n)),
            })
    return pd.DataFrame(rows)


def _notes(group: pd.DataFrame, metric: str, language: str, n: int) -> list[str]:
    """Short flags the report shows as footnotes: too few prompts for an interval; Cantonese read as Mandarin."""
    notes = ["n<5"] if 0 < n < 5 else []
    details = group.get(f"{metric}.detail", pd.Series(dtype=object))
    if language == "yue" and any(json.loads(text).get("language_used") == "zh"
                                 for text in details if isinstance(text, str)):
        notes.append("yue→zh ASR")
    return notes


def _groups(table: pd.DataFrame):
    for model, group in table.groupby("model", sort=True):
        for language, by_language in group.groupby("language", sort=True):
            yield (model, language), by_language
        yield (model, ALL), group


def export(store: RunStore, table: pd.DataFrame, summary_table: pd.DataFrame, extra: dict) -> Path:
    """Write clips and summary as parquet, CSV and JSON under RUN_DIR/exports; returns that directory."""
    directory = store.directory / "exports"
    directory.mkdir(exist_ok=True)
    flat = table.drop(columns=["meta"]).copy()
    for frame, name in ((flat, "clips"), (summary_table, "summary")):
        frame = frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object})
        write_bytes_atomic(directory / f"{name}.parquet", frame.to_parquet(index=False))
        write_bytes_atomic(directory / f"{name}.csv", frame.to_csv(index=False).encode())
    write_json_atomic(directory / "results.json", {
        **extra,
        "summary": json.loads(summary_table.to_json(orient="records")),
        "clips": json.loads(flat.to_json(orient="records", force_ascii=False)),
    })
    return directory
