"""Comparing numbers made the same way: a metric's scores per prompt, the committed baseline format, whether two
sets of scores are comparable, and paired verdicts per model × language. Used by `mheval gate` and the dashboard.

`baseline_document` / `write_baseline` store, per model and language, a metric's summary value and every prompt's
share of it: the prompt's value and weight (for WER: its error rate and reference length, so errors = wer ×
reference_length), together with what produced the numbers (metric version, text normaliser, ASR model and weights
hash).

`compare_prompts` compares two such sets per model × language row, on the prompts both sides share (same item id and
same item content), by a paired bootstrap over prompts of the difference run − baseline
(`mheval.stats.paired_bootstrap`). `check_comparable` refuses numbers made with another ASR model or decoding
settings, another text normaliser, another metric version or configuration, or on another suite, naming the change.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mheval.asr.identity import ASRIdentity, dict_changes
from mheval.files import write_json_atomic
from mheval.metrics import metric_class
from mheval.registry import config_hash
from mheval.results import RunResults
from mheval.stats import DEFAULT_RESAMPLES, MIN_PROMPTS, Estimate, bootstrap, paired_bootstrap
from mheval.status import Status
from mheval.store import MetricKey

BASELINE_FORMAT = "mheval-baseline/1"

# Verdicts of a model × language row. Only pass, regression and improved are comparisons that decide; failed (a
# baseline prompt has no usable score in the run) fails too; the others say why a row was not compared.
PASS, REGRESSION, IMPROVED, FAILED = "pass", "regression", "improved", "failed"
INSUFFICIENT, MISSING, NEW = "insufficient", "missing", "new"
COMPARED = (PASS, REGRESSION, IMPROVED)

PROMPT_COLUMNS = ["model", "language", "item_id", "item_sha256", "value", "weight"]
UNUSABLE_COLUMNS = ["model", "language", "item_id", "item_sha256", "reason"]


class CannotCompare(Exception):
    """The two sets of numbers were not made the same way; comparing them would mislead."""


@dataclass(frozen=True)
class Tolerance:
    """A regression must exceed max(absolute, relative × baseline value) to count."""

    absolute: float = 0.02
    relative: float = 0.10

    @classmethod
    def parse(cls, text: str) -> "Tolerance":
        """`abs=0.02,rel=0.1`; a part left out keeps its default."""
        values: dict[str, float] = {}
        for part in text.split(","):
            key, sep, value = (piece.strip() for piece in part.partition("="))
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if not sep or key not in ("abs", "rel") or not number >= 0:
                raise ValueError(f"--tolerance {text!r}: expected abs=NUMBER,rel=NUMBER with numbers >= 0")
            values[key] = number
        return cls(values.get("abs", cls.absolute), values.get("rel", cls.relative))

    def threshold(self, baseline_value: float) -> float:
        return max(self.absolute, self.relative * abs(baseline_value))

    def __str__(self) -> str:
        return f"abs={self.absolute:g},rel={self.relative:g}"


@dataclass
class MetricScores:
    """One metric's numbers per prompt, from a run or a baseline file, with what produced them."""

    metric: str
    suite: str | None
    prompts: pd.DataFrame                   # PROMPT_COLUMNS; value is the prompt's ratio of sums, weight its denominator
    scorer: dict[str, Any]                  # metric_version, config_hash, [config], [normalizer], [asr]
    source: dict[str, Any] = field(default_factory=dict)   # run directory, suite sha256, seed, git, dates
    unusable: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=UNUSABLE_COLUMNS))  # clips without
    #                                                        a usable score: failed clip, metric failed or n/a, stale
    notes: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)  # (model, language) → run notes

    @property
    def lower_is_better(self) -> bool:
        return metric_class(self.metric).lower_is_better


# -- reading a run ---------------------------------------------------------------------------------------------------

def metric_scores(run: RunResults | Path | str, metric: str = "wer") -> MetricScores:
    """The scores of `metric` of a run's latest invocation (a `RunResults`, or its directory): suite, seed, models,
    clips."""
    if not isinstance(run, RunResults):
        try:
            run = RunResults.load(run, metrics=[metric])
        except ValueError as err:
            raise CannotCompare(str(err)) from None
    key = next((k for k in run.metric_keys if k.name == metric), None)
    if key is None:
        raise CannotCompare(f"{run.directory}: its latest invocation ({run.describe()}) has no {metric} scores")
    table, usable, manifest, record = run.clips, run.usable(metric), run.manifest, run.run
    summary = run.summary
    return MetricScores(
        metric=metric,
        suite=record.suite,
        prompts=prompt_values(usable, metric),
        scorer=_scorer(key, run),
        source={"run": str(run.directory), "run_id": record.run_id, "suite_sha256": record.suite_hash,
                "seed": record.seed, "git": manifest.get("git"), "run_created": manifest.get("created"),
                "description": record.describe()},
        unusable=pd.DataFrame([(row["model"], row["language"], row["item_id"], row["item_hash"],
                                _unusable_reason(row, metric)) for row in table.drop(usable.index).to_dict("records")],
                              columns=UNUSABLE_COLUMNS),
        notes={(row.model, row.language): row.notes for row in summary[summary.metric == metric].itertuples()
               if row.notes},
    )


def prompt_values(clips: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Clips with an ok score → one row per model × prompt: the ratio of sums over its clips, and the weight sum
    (for a metric with an `ideal` value, of the clips' distances to it)."""
    cls = metric_class(metric)
    if clips.empty:
        return pd.DataFrame(columns=PROMPT_COLUMNS)
    values = pd.to_numeric(clips[f"{metric}.{cls.headline}"], errors="coerce")
    if cls.ideal is not None:   # a signed measure (sync's offset) is compared by its distance to the ideal
        values = pd.Series(cls.ranking_values(values), index=values.index)
    weights = (pd.to_numeric(clips[f"{metric}.{cls.weight_field}"], errors="coerce") if cls.weight_field
               else pd.Series(1.0, index=clips.index))
    frame = pd.DataFrame({"model": clips.model, "language": clips.language, "item_id": clips.item_id,
                          "item_sha256": clips.item_hash, "weighted": values * weights, "weight": weights})
    frame = frame[frame.weight > 0].dropna(subset=["weighted", "weight"])
    grouped = frame.groupby(["model", "language", "item_id", "item_sha256"], as_index=False)[["weighted", "weight"]]
    grouped = grouped.sum()
    grouped["value"] = grouped.weighted / grouped.weight
    return grouped[PROMPT_COLUMNS].reset_index(drop=True)


def _unusable_reason(row: dict, metric: str) -> str:
    if row["clip_status"] != Status.OK:
        return f"clip {row['clip_status']} ({str(row['clip_error']).splitlines()[0]})"
    return f"{metric} {row[f'{metric}.status']}"


def _scorer(key: MetricKey, run: RunResults) -> dict[str, Any]:
    """What produced the numbers: metric version and config, and the normaliser and ASR recorded with each score."""
    scorer: dict[str, Any] = {"metric_version": key.version, "config_hash": key.config_hash}
    config = run.metric_config(key.name)
    if config is not None and config_hash(config) == key.config_hash:
        scorer["config"] = config
    details = list(run.usable(key.name).get(f"{key.name}.detail", []))
    normalizers = {detail.normalizer for detail in details if getattr(detail, "normalizer", None) is not None}
    identities = run.asr_identities(key.name)
    for name, distinct in (("normalizer", normalizers), ("asr", identities)):
        if len(distinct) > 1:
            raise CannotCompare(f"the run's {key.name} scores were made with {len(distinct)} different {name} "
                                "settings; re-score the run with one")
    if normalizers:
        scorer["normalizer"] = normalizers.pop()
    if identities:
        scorer["asr"] = identities[0].as_dict()
    return scorer


# -- baseline files --------------------------------------------------------------------------------------------------

def baseline_document(scores: MetricScores, resamples: int = DEFAULT_RESAMPLES) -> dict[str, Any]:
    """A human-readable baseline: header, then per model × language the summary and every prompt's value."""
    cls = metric_class(scores.metric)
    weight_key = cls.weight_field or "clips"
    rows = []
    for (model, language), group in scores.prompts.groupby(["model", "language"], sort=True):
        summary = bootstrap(group.item_id.to_numpy(), group.value.to_numpy(), group.weight.to_numpy(),
                            resamples=resamples)
        rows.append({
            "model": model, "language": language, cls.headline: summary.value,
            "ci95": None if math.isnan(summary.low) else [summary.low, summary.high], "n": summary.n,
            "prompts": {row.item_id: {cls.headline: row.value, weight_key: _plain_number(row.weight),
                                      "item_sha256": row.item_sha256}
                        for row in group.sort_values("item_id").itertuples()},
        })
    return {
        "format": BASELINE_FORMAT,
        "metric": scores.metric,
        "field": cls.headline,
        "weight": weight_key,
        "lower_is_better": cls.lower_is_better,
        "suite": scores.suite,
        "scorer": scores.scorer,
        "source": {**scores.source, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "rows": rows,
    }


def _plain_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def write_baseline(run_dir: Path | str, out: Path | str, metric: str = "wer") -> dict[str, Any]:
    scores = metric_scores(run_dir, metric)
    if scores.prompts.empty:
        raise CannotCompare(f"{run_dir}: no clip has a usable {metric} score; nothing to write")
    document = baseline_document(scores)
    write_json_atomic(Path(out), document)
    return document


def read_baseline(path: Path | str) -> MetricScores:
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CannotCompare(f"{path}: cannot read the baseline ({err})") from err
    if not isinstance(document, dict) or document.get("format") != BASELINE_FORMAT:
        raise CannotCompare(f"{path}: not an mheval baseline (expected \"format\": \"{BASELINE_FORMAT}\")")
    try:
        field_name, weight_key = document["field"], document["weight"]
        prompts = pd.DataFrame(
            [(row["model"], row["language"], item_id, prompt["item_sha256"], float(prompt[field_name]),
              float(prompt[weight_key]))
             for row in document["rows"] for item_id, prompt in row["prompts"].items()],
            columns=PROMPT_COLUMNS)
        return MetricScores(document["metric"], document.get("suite"), prompts, document["scorer"],
                            document.get("source", {}))
    except (KeyError, TypeError, ValueError) as err:
        raise CannotCompare(f"{path}: malformed baseline ({type(err).__name__}: {err})") from err


# -- comparing -------------------------------------------------------------------------------------------------------

def check_comparable(baseline: MetricScores, run: MetricScores) -> list[str]:
    """Raise CannotCompare naming every change that makes the numbers incomparable; return minor differences."""
    changes = []
    if baseline.metric != run.metric:
        raise CannotCompare(f"the baseline holds {baseline.metric}, not {run.metric}")
    if baseline.suite != run.suite:
        changes.append(f"the suite changed: baseline {baseline.suite!r}, run {run.suite!r}")
    old, new = baseline.scorer, run.scorer
    if old.get("normalizer") != new.get("normalizer"):
        changes.append(f"the text normaliser changed: baseline {old.get('normalizer')}, run {new.get('normalizer')}")
    old_asr, new_asr = ASRIdentity.from_dict(old.get("asr")), ASRIdentity.from_dict(new.get("asr"))
    asr_change = old_asr.incomparable_change(new_asr)
    if asr_change:
        changes.append(asr_change)
    if not changes and old.get("metric_version") != new.get("metric_version"):
        changes.append(f"the {run.metric} metric version changed: baseline {old.get('metric_version')}, "
                       f"run {new.get('metric_version')}")
    if not changes and old.get("config_hash") != new.get("config_hash"):
        changes.append(f"the {run.metric} configuration changed: "
                       + dict_changes(old.get("config") or {}, new.get("config") or {}))
    if changes:
        raise CannotCompare("; ".join(changes) + ". These numbers are not comparable: score the run the same way "
                            "as the baseline, or write a new baseline with `mheval baseline write`.")
    return old_asr.minor_differences(new_asr)


@dataclass(frozen=True)
class RowComparison:
    model: str
    language: str
    verdict: str                      # pass | regression | improved | failed | insufficient | missing | new
    baseline: float = math.nan        # on the shared prompts
    current: float = math.nan
    delta: Estimate | None = None     # current − baseline, paired over the shared prompts
    threshold: float = math.nan
    notes: tuple[str, ...] = ()       # why a row failed or was not compared; prompts present on one side only

    @property
    def single_prompt(self) -> bool:
        """One shared prompt (allowed only with min_prompts=1): no interval, the point difference decided."""
        return self.verdict in COMPARED and self.delta is not None and math.isnan(self.delta.low)


def compare_prompts(baseline: pd.DataFrame, run: pd.DataFrame, lower_is_better: bool, tolerance: Tolerance,
                    resamples: int = DEFAULT_RESAMPLES, min_prompts: int = MIN_PROMPTS,
                    unusable: pd.DataFrame | None = None) -> list[RowComparison]:
    """Per model × language: the paired difference on shared prompts and its verdict.

    A row regresses when its point difference is worse than the tolerance and its 95% interval excludes 0 (improves:
    the mirror image). A baseline prompt whose clip in the run has no usable score (`unusable`: clip failed, metric
    failed or not applicable) fails its row. A row with fewer than `min_prompts` shared prompts is insufficient:
    shown, never passed or failed."""
    unusable = pd.DataFrame(columns=UNUSABLE_COLUMNS) if unusable is None else unusable
    old_rows = dict(list(baseline.groupby(["model", "language"])))
    new_rows = dict(list(run.groupby(["model", "language"])))
    lost_rows = dict(list(unusable.groupby(["model", "language"])))
    comparisons = []
    for model, language in sorted(set(old_rows) | set(new_rows)):
        old, new = old_rows.get((model, language)), new_rows.get((model, language))
        lost = lost_rows.get((model, language), unusable.iloc[:0])
        if old is None:
            comparisons.append(RowComparison(model, language, NEW, current=_ratio(new),
                                             notes=(f"not in the baseline ({len(new)} prompts)",)))
            continue
        new = run.iloc[:0] if new is None else new
        comparisons.append(_compare_row(model, language, old, new, lost, lower_is_better, tolerance, resamples,
                                        min_prompts))
    return comparisons


def _compare_row(model, language, old, new, lost, lower_is_better, tolerance, resamples,
                 min_prompts) -> RowComparison:
    failed = lost[lost.item_id.isin(old.item_id) & ~lost.item_id.isin(new.item_id)]
    if new.empty and failed.empty:
        return RowComparison(model, language, MISSING, baseline=_ratio(old),
                             notes=(f"no clip of the run for its {len(old)} baseline prompt(s)",))
    same_content = old.merge(new, on=["item_id", "item_sha256"]).item_id
    notes = _prompt_notes(old, new, set(same_content), set(failed.item_id))
    if not failed.empty:
        reasons = "; ".join(f"{row.item_id}: {row.reason}" for row in failed.sort_values("item_id").itertuples())
        notes.insert(0, f"{len(failed)} baseline prompt(s) without a usable score in the run ({reasons})")
    old, new = old[old.item_id.isin(same_content)], new[new.item_id.isin(same_content)]
    if old.empty:
        verdict = FAILED if not failed.empty else MISSING
        return RowComparison(model, language, verdict, notes=("no prompt in common with the baseline", *notes))
    delta = paired_bootstrap(old.item_id.to_numpy(), old.value.to_numpy(), old.weight.to_numpy(),
                             new.item_id.to_numpy(), new.value.to_numpy(), new.weight.to_numpy(), resamples=resamples)
    baseline_value = _ratio(old)
    threshold = tolerance.threshold(baseline_value)
    if not failed.empty:
        verdict = FAILED
    elif delta.n < min_prompts:
        verdict = INSUFFICIENT
        notes.insert(0, f"{delta.n} shared prompt(s), fewer than {min_prompts}: not decided")
    else:
        verdict = _verdict(delta, lower_is_better, threshold)
    return RowComparison(model, language, verdict, baseline_value, _ratio(new), delta, threshold, tuple(notes))


def _verdict(delta: Estimate, lower_is_better: bool, threshold: float) -> str:
    """Worse beyond the tolerance with an interval that excludes 0: regression; the mirror image: improved."""
    sign = 1.0 if lower_is_better else -1.0
    worse = sign * delta.value
    if math.isnan(delta.low):  # a single prompt: nothing to resample, the point difference decides
        worse_low = worse_high = worse
    else:
        worse_low, worse_high = sorted((sign * delta.low, sign * delta.high))
    if worse > threshold and worse_low > 0:
        return REGRESSION
    if worse < -threshold and worse_high < 0:
        return IMPROVED
    return PASS


def _prompt_notes(old: pd.DataFrame, new: pd.DataFrame, same: set[str], failed: set[str]) -> list[str]:
    notes = []
    for what, ids in (("only in the baseline", set(old.item_id) - set(new.item_id) - failed),
                      ("only in the run", set(new.item_id) - set(old.item_id)),
                      ("text changed since the baseline", (set(old.item_id) & set(new.item_id)) - same)):
        if ids:
            notes.append(f"{len(ids)} prompt(s) {what}: {', '.join(sorted(ids))}")
    return notes


def _ratio(prompts: pd.DataFrame) -> float:
    return float((prompts.value * prompts.weight).sum() / prompts.weight.sum())
