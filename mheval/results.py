"""The typed read model of a run: `RunResults.load(run_dir)` is the only way a reader sees a run directory.

The report, the gate, `mheval compare`, the paper table, the review, the exports, the dashboard and the Python API
all read a run through one `RunResults`, so they cannot disagree. It holds:

- `run`: the latest invocation of `mheval run` (`mheval.store.RunRecord`: suite, seed, models, metric keys) and its
  manifest; readers show exactly its clips and scores, never leftovers of earlier configurations;
- `clips`: one row per clip with `model, item_id, language, seed, clip_status, clip_error, path, sha256, item_hash,
  reference_text, meta` (a dict), `time.<stage>` columns, and per metric `<metric>.status` (a `Status`),
  `<metric>.<field>` values and `<metric>.detail`: the ok score's detail read into the metric's `detail_class`,
  or the `Reason` a score is not applicable or failed;
- `notices` (model → notice, e.g. "tiny random weights"), `unavailable` (metric → why it did not run), `errors`;
- `summary`: model × language (and the macro `all`) × metric, with 95% intervals and `notes` as a tuple of flags.

What a metric is (unit, percent or not, direction, whether it gets the per-language table) is read off its class.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mheval.files import write_bytes_atomic, write_json_atomic
from mheval.metrics import Metric, metric_class, metric_names
from mheval.stats import MIN_PROMPTS, Estimate
from mheval.status import Status
from mheval.store import DATABASE, MetricKey, RunRecord, RunStore

ALL = "all"

STALE_ERROR = ("made by an earlier invocation with another adapter configuration or item content; the latest "
               "invocation did not finish regenerating it")
CLIP_COLUMNS = ["model", "suite", "item_id", "seed", "clip_status", "clip_error", "path", "sha256", "item_hash",
                "language", "reference_text", "meta"]


@dataclass(frozen=True)
class Reason:
    """Why a score is not applicable or failed, as the metric said it; `code` names a kind a reader counts (e.g.
    `judge_parse_failure`), None for the rest."""

    text: str
    code: str | None = None

    def __str__(self) -> str:
        return self.text

    @classmethod
    def from_stored(cls, value: Any) -> "Reason":
        if isinstance(value, dict) and "reason" in value:
            return cls(str(value["reason"]), value.get("code"))
        return cls("" if value is None else str(value))


@dataclass(frozen=True)
class Score:
    """One metric's score of one clip."""

    metric: str
    status: Status
    fields: dict[str, Any] = field(default_factory=dict)
    detail: Any = None            # ok: the metric's `detail_class` instance (or its stored value); else a Reason

    @property
    def value(self) -> Any:
        """The headline field's value (None unless ok)."""
        return self.fields.get(metric_class(self.metric).headline) if self.status == Status.OK else None


@dataclass(frozen=True)
class ClipResult:
    """One clip of the run with every metric's score."""

    model: str
    item_id: str
    language: str
    seed: int
    status: Status
    error: str | None
    path: Path | None             # absolute; None for a clip that failed to generate
    sha256: str | None
    reference_text: str
    meta: dict[str, Any]
    scores: dict[str, Score]


class RunResults:
    """A run directory's latest invocation, read once. Build it with `RunResults.load(run_dir)`."""

    def __init__(self, directory: Path, run: RunRecord, clips: pd.DataFrame, items: pd.DataFrame,
                 errors: pd.DataFrame, unregistered: list[str]):
        self.directory = directory
        self.run = run
        self.clips = clips
        self.items = items
        self.errors = errors
        self.unregistered = unregistered   # metrics scored in the run that this installation does not know

    # -- reading ------------------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, run_dir: Path | str, metrics: list[str] | None = None) -> "RunResults":
        """The latest invocation of `mheval run` in `run_dir`, with the scores of its metric keys (or of `metrics`
        only). FileNotFoundError: not a run directory; OldStoreError: an older store schema; ValueError: no run yet."""
        store = RunStore.open_existing(run_dir)
        try:
            record = store.latest_run()
            if record is None:
                raise ValueError(f"{run_dir}: no run recorded yet; make one with `mheval run --out {run_dir}`")
            return cls.from_store(store, record, metrics)
        finally:
            store.close()

    @classmethod
    def from_store(cls, store: RunStore, record: RunRecord, metrics: list[str] | None = None) -> "RunResults":
        """The same from a store already open (the runner's own, at the end of `mheval run`)."""
        known = set(metric_names())
        keys = [key for key in record.metric_keys if metrics is None or key.name in metrics]
        scored = [key for key in keys if key.name in known]
        clips = _clip_table(store, record, scored)
        return cls(Path(store.directory), record, clips, store.items(record.suite), store.errors(record.run_id),
                   sorted(key.name for key in keys if key.name not in known))

    # -- what the run is ----------------------------------------------------------------------------------------------

    @property
    def manifest(self) -> dict[str, Any]:
        return self.run.manifest

    @property
    def models(self) -> list[str]:
        return self.run.models

    @property
    def metric_keys(self) -> list[MetricKey]:
        return [key for key in self.run.metric_keys if key.name in set(self.metrics)]

    @cached_property
    def metrics(self) -> list[str]:
        """The registered metrics this invocation scored, in the order it scored them."""
        known = set(metric_names())
        return [key.name for key in self.run.metric_keys if key.name in known and f"{key.name}.status" in self.clips]

    @property
    def notices(self) -> dict[str, str | None]:
        """Model label → its notice (e.g. "tiny random weights"), which every table shows beside the name."""
        return {label: spec.get("notice") for label, spec in self.manifest.get("models", {}).items()}

    @property
    def unavailable(self) -> dict[str, str]:
        """Metric → why it could not run here (and how to make it run)."""
        return {name: spec["unavailable"] for name, spec in self.manifest.get("metrics", {}).items()
                if spec.get("unavailable")}

    def metric_config(self, name: str) -> dict[str, Any] | None:
        """The configuration a metric scored this run with (from the manifest)."""
        return self.manifest.get("metrics", {}).get(name, {}).get("config")

    @property
    def finished(self) -> bool:
        return self.run.finished is not None

    def describe(self) -> str:
        return self.run.describe()

    def label(self, model: str) -> str:
        return model_label(model, self.notices)

    # -- clips and scores ---------------------------------------------------------------------------------------------

    def clip(self, model: str, item_id: str) -> ClipResult:
        rows = self.clips[(self.clips.model == model) & (self.clips.item_id == item_id)]
        if rows.empty:
            raise KeyError(f"{self.directory}: no clip of model {model!r} for item {item_id!r} in this run")
        return self._clip_result(rows.iloc[0])

    def clip_results(self) -> list[ClipResult]:
        return [self._clip_result(row) for _, row in self.clips.iterrows()]

    def _clip_result(self, row: pd.Series) -> ClipResult:
        return ClipResult(row["model"], row["item_id"], row["language"], int(row["seed"]), Status(row["clip_status"]),
                          row["clip_error"] if isinstance(row["clip_error"], str) else None,
                          self.directory / row["path"] if isinstance(row["path"], str) else None,
                          row["sha256"] if isinstance(row["sha256"], str) else None, row["reference_text"],
                          row["meta"], {name: score_of(row, name) for name in self.metrics})

    def usable(self, metric: str) -> pd.DataFrame:
        """Clips that were generated and scored ok by `metric`."""
        status = self.clips.get(f"{metric}.status")
        if status is None:
            return self.clips.iloc[:0]
        return self.clips[(self.clips.clip_status == Status.OK) & (status == Status.OK)]

    def reasons(self, metric: str, code: str | None = None) -> pd.Series:
        """The `Reason` of every clip the metric could not score (of one `code` only, when given)."""
        column = self.clips.get(f"{metric}.detail")
        if column is None:
            return pd.Series(dtype=object)
        status = self.clips[f"{metric}.status"]
        reasons = column[status.isin([Status.NOT_APPLICABLE, Status.FAILED])]
        return reasons[[code is None or getattr(reason, "code", None) == code for reason in reasons]]

    def asr_identities(self, metric: str = "wer") -> list:
        """The distinct ASR identities recorded with the metric's ok scores (one, for a run scored one way)."""
        from mheval.asr.identity import ASRIdentity

        found = {json.dumps(detail.asr.as_dict(), sort_keys=True): detail.asr
                 for detail in self.usable(metric).get(f"{metric}.detail", [])
                 if isinstance(getattr(detail, "asr", None), ASRIdentity) and detail.asr.recorded}
        return list(found.values())

    # -- the run as a whole -------------------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """`empty` (no clips), `failed` (no clip generated), `partial` (some clip or score failed, or the invocation
        did not finish) or `ok`."""
        if self.clips.empty:
            return "empty"
        if (self.clips.clip_status != Status.OK).all():
            return "failed"
        failed_scores = any((self.clips[f"{name}.status"] == Status.FAILED).any() for name in self.metrics)
        if (self.clips.clip_status != Status.OK).any() or failed_scores or not self.finished:
            return "partial"
        return "ok"

    @property
    def any_failed(self) -> bool:
        return (self.clips.clip_status != Status.OK).any() or any(
            (self.clips[f"{name}.status"] == Status.FAILED).any() for name in self.metrics)

    @cached_property
    def summary(self) -> pd.DataFrame:
        """`summary` of the run's clips for every metric it scored or could not run (those rows are empty)."""
        known = set(metric_names())
        absent = [name for name in self.unavailable if name in known and name not in self.metrics]
        return summary(self.clips, self.metrics + absent) if not self.clips.empty else summary_frame([])

    def export(self) -> Path:
        """Clips and summary as parquet, CSV and JSON under RUN_DIR/exports; returns that directory."""
        directory = self.directory / "exports"
        directory.mkdir(exist_ok=True)
        flat = exportable_clips(self.clips)
        summary_rows = self.summary.assign(notes=["; ".join(notes) for notes in self.summary.notes])
        for frame, name in ((flat, "clips"), (summary_rows, "summary")):
            frame = frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object})
            write_bytes_atomic(directory / f"{name}.parquet", frame.to_parquet(index=False))
            write_bytes_atomic(directory / f"{name}.csv", frame.to_csv(index=False).encode())
        write_json_atomic(directory / "results.json", {
            "run": self.run.as_dict(), "unavailable": self.unavailable, "notices": self.notices,
            "manifest": self.manifest,
            "summary": json.loads(self.summary.to_json(orient="records", force_ascii=False)),
            "clips": json.loads(flat.to_json(orient="records", force_ascii=False)),
        })
        return directory


def is_run_directory(path: Path | str) -> bool:
    return (Path(path) / DATABASE).is_file()


def run_stamp(directory: Path | str) -> tuple[int, ...]:
    """Modification times of a run's database files: changes whenever a run writes to it (for readers' caches)."""
    database = Path(directory) / DATABASE
    return tuple(path.stat().st_mtime_ns if path.exists() else 0
                 for path in (database, database.with_name(database.name + "-wal")))


def score_of(row: pd.Series, metric: str) -> Score:
    """One metric's `Score` from a row of `RunResults.clips`."""
    status = Status(row.get(f"{metric}.status", Status.MISSING))
    fields = {name: row.get(f"{metric}.{name}") for name in metric_class(metric).fields} \
        if status == Status.OK else {}
    return Score(metric, status, fields, row.get(f"{metric}.detail"))


def model_label(model: str, notices: dict[str, str | None]) -> str:
    """A model's name as tables show it, with its notice (e.g. tiny random weights) when it has one."""
    notice = notices.get(model)
    return f"{model} ({notice})" if notice else model


# -- building the clip table (private: readers get it from RunResults) -----------------------------------------------

def _clip_table(store: RunStore, run: RunRecord, keys: list[MetricKey]) -> pd.DataFrame:
    """One row per clip of an invocation with the scores of `keys` joined on their score key (clip sha256 × item
    content × metric version, config and weights), so a clip shows only scores computed for its item by these
    metric settings."""
    clips = store.run_clips(run)
    clips["status"] = [Status.STALE if stale else Status(status) for status, stale in zip(clips.status, clips.stale)]
    clips.loc[clips.stale, "error"] = STALE_ERROR
    items = store.items(run.suite)[["suite", "item_id", "language", "reference_text"]]
    table = clips.drop(columns="stale").merge(items, on=["suite", "item_id"], how="left")
    table = table.rename(columns={"status": "clip_status", "error": "clip_error"})
    table["meta"] = [json.loads(text) if isinstance(text, str) else {} for text in table.meta]
    table = pd.concat([table[[c for c in CLIP_COLUMNS if c in table]].reset_index(drop=True),
                       _timing_columns(table.meta)], axis=1)
    if table.empty:
        return table.reindex(columns=CLIP_COLUMNS)
    scores = store.scores(keys)
    for key in keys:
        table = _attach_metric(table, scores, key)
    return table


def _timing_columns(meta: pd.Series) -> pd.DataFrame:
    rows = []
    for data in meta:
        row = {f"time.{stage}": seconds for stage, seconds in data.get("timings", {}).items()}
        row["time.total"] = data.get("wall_seconds", np.nan)
        rows.append(row)
    return pd.DataFrame(rows, index=range(len(rows)))


def _attach_metric(table: pd.DataFrame, scores: pd.DataFrame, key: MetricKey) -> pd.DataFrame:
    cls = metric_class(key.name)
    mine = scores[(scores.metric == key.name) & (scores.metric_version == key.version)
                  & (scores.config_hash == key.config_hash) & (scores.weights_hash == key.weights_hash)]
    columns = {}
    for row in mine.itertuples():
        status = Status(row.status)
        stored = json.loads(row.detail) if isinstance(row.detail, str) else None
        values = {f"{key.name}.{name}": value for name, value in json.loads(row.fields).items()}
        values[f"{key.name}.status"] = status
        values[f"{key.name}.detail"] = cls.read_detail(stored) if status == Status.OK else Reason.from_stored(stored)
        columns[row.score_key] = values
    attached = pd.DataFrame.from_dict(columns, orient="index")
    if attached.empty:
        return table.assign(**{f"{key.name}.status": Status.MISSING, f"{key.name}.detail": None})
    score_keys = [key.score_key(sha256, item_hash) if status == Status.OK else None  # stale clips show no score
                  for sha256, item_hash, status in zip(table.sha256, table.item_hash, table.clip_status)]
    table = table.assign(_score_key=score_keys).merge(attached, left_on="_score_key", right_index=True, how="left")
    table[f"{key.name}.status"] = [Status(status) if isinstance(status, str) else Status.MISSING
                                   for status in table[f"{key.name}.status"]]
    return table.drop(columns="_score_key")


def exportable_clips(clips: pd.DataFrame) -> pd.DataFrame:
    """The clip table with plain values only (details and reasons as JSON text, statuses as their values)."""
    from dataclasses import asdict, is_dataclass

    def plain(value: Any) -> Any:
        if isinstance(value, Reason):
            return value.text
        if is_dataclass(value):
            return json.dumps(asdict(value), default=str, ensure_ascii=False)
        if isinstance(value, (dict, list)):
            return json.dumps(value, default=str, ensure_ascii=False)
        return value

    flat = clips.drop(columns=["meta"], errors="ignore").copy()
    for column in flat.columns:
        if column.endswith(".detail"):
            flat[column] = flat[column].map(plain)
        elif column.endswith(".status") or column == "clip_status":
            flat[column] = flat[column].map(lambda status: str(status) if isinstance(status, Status) else status)
    return flat


# -- summaries --------------------------------------------------------------------------------------------------------

SUMMARY_COLUMNS = ["model", "language", "metric", "field", "value", "ci_low", "ci_high", "n", "clip_mean",
                   "clip_mean_low", "clip_mean_high", "ok", "not_applicable", "failed", "lower_is_better", "notes"]


def summary_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def estimate(table: pd.DataFrame, metric: type[Metric] | Metric, field: str | None = None,
             weighted: bool = True, by_language: bool = False) -> Estimate:
    """Summary of one metric field over the clips in `table` (`Metric.estimate`), for readers of a clip table."""
    return metric.estimate(table, field, weighted, by_language)


def summary(table: pd.DataFrame, metric_names: list[str]) -> pd.DataFrame:
    """Long table: model × language (and language "all") × metric → value, 95% interval, n prompts, clip counts,
    notes (a tuple of flags).

    Per language, `value` is the metric's summary over the model's prompts (`Metric.summarize`: corpus-level for
    weighted metrics such as WER, the signed median over confident clips for sync); `clip_mean` is the mean of
    per-clip values (for WER: the per-utterance mean), each with its interval.

    The `all` row is the macro-average over languages — each language counts once, whatever its unit (CER or WER)
    or number of prompts — on the prompts that every model with scores for the metric has scored, so models are
    ranked on the same prompts; its interval is a bootstrap over prompts stratified by language.

    `notes` flags what a reader must know: the metric's own (e.g. sync's share of confident clips), `n<5` (fewer
    than 5 prompts: the interval is little more than the min–max range; `n<5 per language` on an `all` row one of
    whose languages has fewer: that language adds little or no variance to the interval), `yue→zh ASR` (speech
    transcribed with another language's decoder, e.g. Cantonese by a Whisper without `yue`), and for `all` the
    prompts left out because some model has no score for them."""
    shared = {name: prompts_scored_by_every_model(table, name) for name in metric_names}
    rows = []
    for model, by_model in table.groupby("model", sort=True):
        for language, group in by_model.groupby("language", sort=True):
            rows += [_summary_row(model, language, group, group, metric_class(name)) for name in metric_names]
        for name in metric_names:
            common = by_model[by_model.item_id.isin(shared[name])]
            rows.append(_summary_row(model, ALL, by_model, common, metric_class(name), macro=True))
    return summary_frame(rows)


def prompts_scored_by_every_model(table: pd.DataFrame, name: str) -> set[str]:
    """Items with a usable score for every model that has any usable score of this metric."""
    ok = table[table.get(f"{name}.status") == Status.OK] if f"{name}.status" in table else table.iloc[:0]
    per_item = ok.groupby("item_id").model.nunique()
    return set(per_item[per_item == ok.model.nunique()].index)


def _summary_row(model: str, language: str, clips: pd.DataFrame, scored: pd.DataFrame, metric: type[Metric],
                 macro: bool = False) -> dict:
    """One summary row: `clips` are all the row's clips (for the counts), `scored` those its value is computed on."""
    headline = metric.summarize(scored, by_language=macro)
    result = headline.estimate
    per_clip = estimate(scored, metric, weighted=False, by_language=macro)
    status = clips.get(f"{metric.name}.status", pd.Series(dtype=object))
    notes = list(headline.notes) + ([f"n<{MIN_PROMPTS}"] if 0 < result.n < MIN_PROMPTS else
                                    [f"n<{MIN_PROMPTS} per language"] if result.too_few and result.n else [])
    notes += _decoder_notes(scored, metric.name)
    left_out = (status == Status.OK).sum() - len(metric.scored_rows(scored))
    if macro and left_out:
        notes.append(f"{left_out} prompt(s) not scored for every model left out")
    return {
        "model": model, "language": language, "metric": metric.name, "field": metric.headline,
        "value": result.value, "ci_low": result.low, "ci_high": result.high, "n": result.n,
        "clip_mean": per_clip.value, "clip_mean_low": per_clip.low, "clip_mean_high": per_clip.high,
        "ok": int((status == Status.OK).sum()), "not_applicable": int((status == Status.NOT_APPLICABLE).sum()),
        "failed": int((status == Status.FAILED).sum()) + int((clips.clip_status != Status.OK).sum()),
        "lower_is_better": metric.lower_is_better, "notes": tuple(dict.fromkeys(notes)),
    }


def distinct_notes(rows: pd.DataFrame) -> list[str]:
    """The distinct notes of summary rows (e.g. one model × language row's metrics), in order of appearance."""
    return list(dict.fromkeys(note for notes in rows.get("notes", []) for note in notes))


def _decoder_notes(clips: pd.DataFrame, name: str) -> list[str]:
    """`yue→zh ASR` where a score records that its speech was decoded as another language than the item's."""
    if f"{name}.detail" not in clips:
        return []
    found = set()
    for language, status, detail in zip(clips.language, clips[f"{name}.status"], clips[f"{name}.detail"]):
        used = getattr(detail, "language_used", None) if status == Status.OK else None
        if used and used != language:
            found.add(f"{language}→{used} ASR")
    return sorted(found)
