"""Results as tables: one row per clip with every metric's fields, and summaries with bootstrap intervals.

Shared by the terminal report, the exports, the gate and the dashboard, so they can never disagree.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mheval.metrics import Metric, metric_class
from mheval.stats import MIN_PROMPTS, Estimate
from mheval.files import write_bytes_atomic, write_json_atomic
from mheval.store import MetricKey, RunRecord, RunStore

ALL = "all"


STALE_ERROR = ("made by an earlier invocation with another adapter configuration or item content; the latest "
               "invocation did not finish regenerating it")


def clip_table(store: RunStore, run: RunRecord | None = None, keys: list[MetricKey] | None = None) -> pd.DataFrame:
    """One row per clip of an invocation (default: the latest one): model, item, language, status, timings, and
    `<metric>.<field>` / `<metric>.status` columns for each metric key (default: the invocation's).

    Scores are joined on their score key (clip sha256 × item content × metric version, config and weights), so a
    clip shows only scores computed for its item by these metric settings."""
    run = store.latest_run() if run is None else run
    if run is None:
        return pd.DataFrame(columns=["model", "suite", "item_id", "seed", "clip_status", "language", "meta"])
    clips = store.run_clips(run)
    clips.loc[clips.stale, ["status", "error"]] = ["stale", STALE_ERROR]
    items = store.items(run.suite)[["suite", "item_id", "language", "reference_text"]]
    table = clips.drop(columns="stale").merge(items, on=["suite", "item_id"], how="left")
    table = table.rename(columns={"status": "clip_status", "error": "clip_error"})
    table = pd.concat([table.reset_index(drop=True), _timing_columns(table.meta)], axis=1)
    keys = run.metric_keys if keys is None else keys
    scores = store.scores(keys)
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
                  & (scores.config_hash == key.config_hash) & (scores.weights_hash == key.weights_hash)]
    columns = {}
    for row in mine.itertuples():
        values = {f"{key.name}.{field}": value for field, value in json.loads(row.fields).items()}
        values[f"{key.name}.status"] = row.status
        values[f"{key.name}.detail"] = row.detail
        columns[row.score_key] = values
    attached = pd.DataFrame.from_dict(columns, orient="index")
    if attached.empty:
        table[f"{key.name}.status"] = "missing"
        return table
    score_keys = [key.score_key(sha256, item_hash) if status == "ok" else None  # stale clips show no score
                  for sha256, item_hash, status in zip(table.sha256, table.item_hash, table.clip_status)]
    table = table.assign(_score_key=score_keys).merge(attached, left_on="_score_key", right_index=True, how="left")
    table[f"{key.name}.status"] = table[f"{key.name}.status"].fillna("missing")
    return table.drop(columns="_score_key")


def estimate(table: pd.DataFrame, metric: type[Metric] | Metric, field: str | None = None,
             weighted: bool = True, by_language: bool = False) -> Estimate:
    """Summary of one metric field over the clips in `table` (`Metric.estimate`), for readers of a clip table."""
    return metric.estimate(table, field, weighted, by_language)


def summary(table: pd.DataFrame, metric_names: list[str]) -> pd.DataFrame:
    """Long table: model × language (and language "all") × metric → value, 95% interval, n prompts, clip counts,
    notes.

    Per language, `value` is the metric's summary over the model's prompts (`Metric.summarize`: corpus-level for
    weighted metrics such as WER, the signed median over confident clips for sync); `clip_mean` is the mean of
    per-clip values (for WER: the per-utterance mean), each with its interval.

    The `all` row is the macro-average over languages — each language counts once, whatever its unit (CER or WER)
    or number of prompts — on the prompts that every model with scores for the metric has scored, so models are
    ranked on the same prompts; its interval is a bootstrap over prompts stratified by language.

    `notes` flags what a reader must know: the metric's own (e.g. sync's share of confident clips), `n<5` (fewer
    than 5 prompts: the interval is little more than the min–max range), `yue→zh ASR` (speech transcribed with
    another language's decoder, e.g. Cantonese by a Whisper without `yue`), and for `all` the prompts left out
    because some model has no score for them."""
    shared = {name: _prompts_scored_by_every_model(table, name) for name in metric_names}
    rows = []
    for model, by_model in table.groupby("model", sort=True):
        for language, group in by_model.groupby("language", sort=True):
            rows += [_summary_row(model, language, group, group, metric_class(name)) for name in metric_names]
        for name in metric_names:
            common = by_model[by_model.item_id.isin(shared[name])]
            rows.append(_summary_row(model, ALL, by_model, common, metric_class(name), macro=True))
    return pd.DataFrame(rows)


def _prompts_scored_by_every_model(table: pd.DataFrame, name: str) -> set[str]:
    """Items with a usable score for every model that has any usable score of this metric."""
    ok = table[table.get(f"{name}.status") == "ok"] if f"{name}.status" in table else table.iloc[:0]
    per_item = ok.groupby("item_id").model.nunique()
    return set(per_item[per_item == ok.model.nunique()].index)


def _summary_row(model: str, language: str, clips: pd.DataFrame, scored: pd.DataFrame, metric: type[Metric],
                 macro: bool = False) -> dict:
    """One summary row: `clips` are all the row's clips (for the counts), `scored` those its value is computed on."""
    headline = metric.summarize(scored, by_language=macro)
    result = headline.estimate
    per_clip = estimate(scored, metric, weighted=False, by_language=macro)
    status = clips.get(f"{metric.name}.status", pd.Series(dtype=str))
    notes = list(headline.notes) + ([f"n<{MIN_PROMPTS}"] if 0 < result.n < MIN_PROMPTS else [])
    notes += _decoder_notes(scored, metric.name)
    left_out = (status == "ok").sum() - len(metric.scored_rows(scored))
    if macro and left_out:
        notes.append(f"{left_out} prompt(s) not scored for every model left out")
    return {
        "model": model, "language": language, "metric": metric.name, "field": metric.headline,
        "value": result.value, "ci_low": result.low, "ci_high": result.high, "n": result.n,
        "clip_mean": per_clip.value, "clip_mean_low": per_clip.low, "clip_mean_high": per_clip.high,
        "ok": int((status == "ok").sum()), "not_applicable": int((status == "not_applicable").sum()),
        "failed": int((status == "failed").sum()) + int((clips.clip_status != "ok").sum()),
        "lower_is_better": metric.lower_is_better, "notes": "; ".join(notes),
    }


def model_label(model: str, notices: dict[str, str | None]) -> str:
    """A model's name as tables show it, with its notice (e.g. tiny random weights) when it has one."""
    notice = notices.get(model)
    return f"{model} ({notice})" if notice else model


def distinct_notes(rows: pd.DataFrame) -> list[str]:
    """The distinct notes of summary rows (e.g. one model × language row's metrics), in order of appearance."""
    return list(dict.fromkeys(note for text in rows.get("notes", []) for note in str(text).split("; ") if note))


def _decoder_notes(clips: pd.DataFrame, name: str) -> list[str]:
    """`yue→zh ASR` where a score records that its speech was decoded as another language than the item's."""
    if f"{name}.detail" not in clips:
        return []
    found = set()
    for language, status, text in zip(clips.language, clips[f"{name}.status"], clips[f"{name}.detail"]):
        detail = json.loads(text) if status == "ok" and isinstance(text, str) else None
        used = detail.get("language_used") if isinstance(detail, dict) else None
        if used and used != language:
            found.add(f"{language}→{used} ASR")
    return sorted(found)


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
