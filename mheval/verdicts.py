"""Paired verdicts: is model A better than model B on each metric, in each language and overall, and are we sure?

Both models ran the same prompts, so each comparison is paired over the prompts both have a usable score for (same
item id and content): per prompt the metric's value on both sides (a ratio of sums over the prompt's clips: WER
weighs by reference length; a metric with an `ideal` value, sync's signed offset, is compared by the distance to
it; only the clips the metric trusts enter, `Metric.compared_rows`: sync's confident ones). For every model pair,
metric and language, plus the macro `all` row (each language counts once, resampled and permuted within
languages):

- `delta` = A − B with a paired bootstrap 95% interval over prompts, and a two-sided sign-flip permutation p-value
  (`mheval.stats.paired_test`);
- `p_adjusted`: the p-values of the whole family the command reports (every pair × metric × language row that was
  tested) adjusted with Holm (family-wise error rate) or, with `fdr`, Benjamini–Hochberg (false discovery rate);
- `verdict`: `a_better` / `b_better` where the adjusted p is below `alpha`, respecting the metric's direction;
  `no_difference` otherwise, with `prompts_needed` — how many paired prompts would detect the observed difference
  at 80% power (paired t approximation, before the family adjustment); `insufficient` with fewer than
  `min_prompts` shared prompts (never tested, not part of the family).
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import numpy as np

from mheval.baselines import prompt_values
from mheval.metrics import metric_class
from mheval.results import ALL, RunResults
from mheval.stats import ADJUSTMENTS, DEFAULT_RESAMPLES, MIN_PROMPTS, PERMUTATIONS, adjust_p_values, paired_test, \
    prompts_for_power

A_BETTER, B_BETTER, NO_DIFFERENCE, INSUFFICIENT = "a_better", "b_better", "no_difference", "insufficient"
VERDICTS = (A_BETTER, B_BETTER, NO_DIFFERENCE, INSUFFICIENT)
COLUMNS = ["model_a", "model_b", "metric", "field", "language", "n", "a_value", "b_value", "delta", "ci_low",
           "ci_high", "p", "p_adjusted", "verdict", "prompts_needed", "lower_is_better"]
DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8


@dataclass(frozen=True)
class VerdictSettings:
    models: tuple[str, ...] = ()          # empty: every model of the run
    reference: str | None = None          # set: each other model against it; else every pair
    metrics: tuple[str, ...] = ()         # empty: every metric the run scored
    adjustment: str = "holm"              # holm | fdr_bh
    alpha: float = DEFAULT_ALPHA
    power: float = DEFAULT_POWER
    min_prompts: int = MIN_PROMPTS
    resamples: int = DEFAULT_RESAMPLES
    permutations: int = PERMUTATIONS   # random sign flips for rows with more prompts than are enumerated exactly
    seed: int = 0

    def __post_init__(self):
        if self.adjustment not in ADJUSTMENTS:
            raise ValueError(f"unknown adjustment {self.adjustment!r}; one of {', '.join(ADJUSTMENTS)}")
        if not 0 < self.alpha < 1 or not 0 < self.power < 1:
            raise ValueError(f"alpha and power must lie between 0 and 1, got {self.alpha} and {self.power}")
        if self.min_prompts < 2:
            raise ValueError(f"min_prompts must be at least 2 (a paired test needs two prompts), got "
                             f"{self.min_prompts}")


@dataclass
class Verdicts:
    """The verdict rows (`COLUMNS`) of one family of comparisons and how they were adjusted."""

    rows: pd.DataFrame
    settings: VerdictSettings
    run: str = ""                          # which clips: the run's description
    human: pd.DataFrame = field(default_factory=pd.DataFrame)   # review studies' win rates for the same pairs

    @property
    def family(self) -> int:
        """How many comparisons were tested (and adjusted together)."""
        return int(self.rows.p.notna().sum())

    def statement(self) -> str:
        """One line a reader needs beside the table: the test, the adjustment, the family and alpha."""
        return (f"A − B paired over shared prompts; p: sign-flip permutation test; adjusted by "
                f"{ADJUSTMENTS[self.settings.adjustment]} over {self.family} comparison(s); verdict at α = "
                f"{self.settings.alpha:g}; fewer than {self.settings.min_prompts} shared prompts: insufficient")

    def pairs(self) -> list[tuple[str, str]]:
        return list(dict.fromkeys(zip(self.rows.model_a, self.rows.model_b)))

    def decided(self) -> pd.DataFrame:
        return self.rows[self.rows.verdict.isin([A_BETTER, B_BETTER])]

    def records(self) -> list[dict[str, Any]]:
        """JSON-ready rows: NaN as null, infinities as null with the verdict saying why."""
        clean = self.rows.astype(object).where(self.rows.notna(), None)
        return [{key: (None if isinstance(value, float) and not math.isfinite(value) else value)
                 for key, value in row.items()} for row in clean.to_dict("records")]

    def to_json(self) -> dict[str, Any]:
        return {"format": "mheval-verdicts/1", "run": self.run, "settings": asdict(self.settings),
                "adjustment": ADJUSTMENTS[self.settings.adjustment], "family": self.family,
                "statement": self.statement(), "rows": self.records(),
                "human": json.loads(self.human.to_json(orient="records")) if not self.human.empty else []}

    def write_json(self, path: Path) -> None:
        from mheval.files import write_json_atomic

        write_json_atomic(path, self.to_json())

    def to_markdown(self) -> str:
        lines = [f"# Paired verdicts — {self.run}", "", self.statement(), "",
                 "| A | B | metric | language | n | A | B | Δ A−B [95% CI] | p | p adj. | verdict |",
                 "|---|---|---|---|---:|---:|---:|---|---:|---:|---|"]
        for row in self.rows.itertuples():
            lines.append(f"| {row.model_a} | {row.model_b} | {row.metric} ({row.field}) | {row.language} | {row.n} "
                         f"| {number(row.a_value)} | {number(row.b_value)} | {delta_text(row)} | {number(row.p)} "
                         f"| {number(row.p_adjusted)} | {verdict_text(row)} |")
        if not self.human.empty:
            lines += ["", "## Human review (same pairs)", "", self.human.to_markdown(index=False, floatfmt=".3f")]
        return "\n".join(lines) + "\n"


def number(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"


def delta_text(row) -> str:
    if math.isnan(row.delta):
        return "–"
    interval = "" if math.isnan(row.ci_low) else f" [{row.ci_low:+.3g}, {row.ci_high:+.3g}]"
    return f"{row.delta:+.3g}{interval}"


def verdict_text(row) -> str:
    if row.verdict == NO_DIFFERENCE and math.isfinite(row.prompts_needed):
        return f"no difference (≈{int(row.prompts_needed)} prompts for 80% power)"
    return row.verdict.replace("_", " ")


def pairs_of(models: list[str], reference: str | None) -> list[tuple[str, str]]:
    if reference is None:
        return list(itertools.combinations(models, 2))
    if reference not in models:
        raise ValueError(f"--reference {reference!r} is not a model of this comparison ({', '.join(models)})")
    return [(model, reference) for model in models if model != reference]


def verdicts(results: RunResults, settings: VerdictSettings = VerdictSettings()) -> Verdicts:
    """Every pair's paired verdicts on every metric and language of a run (see the module docstring)."""
    models = list(settings.models) or results.models
    unknown = [model for model in models if model not in results.models]
    if unknown:
        raise ValueError(f"{results.directory}: no model {', '.join(unknown)} in this run (it has "
                         f"{', '.join(results.models)})")
    if len(models) < 2:
        raise ValueError(f"a comparison needs two models; {results.directory} has {', '.join(models) or 'none'}")
    metrics = list(settings.metrics) or results.metrics
    missing = [name for name in metrics if name not in results.metrics]
    if missing:
        raise ValueError(f"{results.directory}: metric {', '.join(missing)} has no scores in this run (scored: "
                         f"{', '.join(results.metrics) or 'none'})")
    rows = []
    for name in metrics:
        prompts = comparable_prompts(results, name)
        for model_a, model_b in pairs_of(models, settings.reference):
            rows += pair_rows(prompts, name, model_a, model_b, settings)
    table = pd.DataFrame(rows, columns=[*COLUMNS, "standard_error"])
    table["p_adjusted"] = adjust_p_values(table.p.to_numpy(dtype=float), settings.adjustment)
    table["verdict"] = [decide(row, settings.alpha) for row in table.itertuples()]
    table["prompts_needed"] = [prompts_for_power(row.delta, row.standard_error, row.n, settings.power,
                                                 settings.alpha) if row.verdict == NO_DIFFERENCE else math.nan
                               for row in table.itertuples()]
    return Verdicts(table[COLUMNS], settings, results.describe())


def comparable_prompts(results: RunResults, metric: str) -> pd.DataFrame:
    """Per model × prompt the value the comparison uses (`prompt_values` over the clips the metric trusts)."""
    cls = metric_class(metric)
    return prompt_values(cls.compared_rows(results.usable(metric)), metric)


def pair_rows(prompts: pd.DataFrame, metric: str, model_a: str, model_b: str,
              settings: VerdictSettings) -> list[dict[str, Any]]:
    cls = metric_class(metric)
    shared = prompts[prompts.model == model_a].merge(prompts[prompts.model == model_b],
                                                     on=["language", "item_id", "item_sha256"], suffixes=("_a", "_b"))
    languages = sorted(set(prompts[prompts.model.isin([model_a, model_b])].language))
    field_name = cls.headline if cls.ideal is None else f"|{cls.headline} − {cls.ideal:g}|"
    rows = []
    for language in [*languages, ALL]:
        mine = shared if language == ALL else shared[shared.language == language]
        row = {"model_a": model_a, "model_b": model_b, "metric": metric, "field": field_name, "language": language,
               "n": len(mine), "lower_is_better": cls.ideal is not None or cls.lower_is_better}
        strata = mine.language.to_numpy() if language == ALL else None
        test = paired_test(mine.item_id.to_numpy(), mine.value_a, mine.weight_a, mine.value_b, mine.weight_b,
                           strata=strata, resamples=settings.resamples, permutations=settings.permutations,
                           seed=settings.seed)
        row.update(a_value=side_value(mine, "a", strata), b_value=side_value(mine, "b", strata), delta=test.delta,
                   ci_low=test.low, ci_high=test.high, p=test.p if len(mine) >= settings.min_prompts else math.nan,
                   standard_error=test.standard_error)
        rows.append(row)
    return rows


def side_value(prompts: pd.DataFrame, side: str, strata) -> float:
    """One side's summary on the shared prompts (macro over languages when `strata` is given)."""
    if prompts.empty:
        return math.nan
    values, weights = prompts[f"value_{side}"].to_numpy(float), prompts[f"weight_{side}"].to_numpy(float)
    labels = np.zeros(len(values)) if strata is None else np.asarray(strata)
    return float(np.mean([np.sum(values[labels == s] * weights[labels == s]) / np.sum(weights[labels == s])
                          for s in np.unique(labels)]))


def decide(row, alpha: float) -> str:
    if math.isnan(row.p):
        return INSUFFICIENT
    if not row.p_adjusted < alpha or row.delta == 0:
        return NO_DIFFERENCE
    a_lower = row.delta < 0
    return A_BETTER if a_lower == row.lower_is_better else B_BETTER


def pair_summary(table: Verdicts) -> list[tuple[str, str, list[str], list[str], int, int]]:
    """Per pair: (A, B, where A is better, where B is better, rows with no difference, insufficient rows), each
    "where" as `metric/language` texts, `all` first."""
    summaries = []
    for model_a, model_b in table.pairs():
        rows = table.rows[(table.rows.model_a == model_a) & (table.rows.model_b == model_b)]
        order = rows.assign(_all=rows.language != ALL).sort_values(["_all", "metric", "language"])

        def where(verdict: str) -> list[str]:
            return [f"{row.metric}/{row.language}" for row in order.itertuples() if row.verdict == verdict]

        summaries.append((model_a, model_b, where(A_BETTER), where(B_BETTER),
                          int((rows.verdict == NO_DIFFERENCE).sum()), int((rows.verdict == INSUFFICIENT).sum())))
    return summaries


def verdict_lines(table: Verdicts) -> list[str]:
    """Per pair, one line: where A is better and where B is better after the family adjustment, then how many rows
    showed no difference or had too few prompts."""
    lines = []
    for model_a, model_b, a_wins, b_wins, same, insufficient in pair_summary(table):
        parts = [f"{model_a} better: {', '.join(a_wins)}" if a_wins else "",
                 f"{model_b} better: {', '.join(b_wins)}" if b_wins else "",
                 f"no difference: {same}" if same else "", f"insufficient: {insufficient}" if insufficient else ""]
        lines.append(f"{model_a} vs {model_b}: " + "; ".join(part for part in parts if part))
    return lines


def verdict_table(table: Verdicts, pair: tuple[str, str] | None = None) -> pd.DataFrame:
    """The rows of one pair (or all) as display text: value columns formatted, verdict in words."""
    rows = table.rows if pair is None else table.rows[(table.rows.model_a == pair[0]) & (table.rows.model_b == pair[1])]
    return pd.DataFrame({
        "A": rows.model_a, "B": rows.model_b,
        "metric": [row.metric if row.field == row.metric else f"{row.metric} ({row.field})"
                   for row in rows.itertuples()],
        "language": rows.language, "n": rows.n, "A value": rows.a_value.map(number),
        "B value": rows.b_value.map(number), "Δ A−B [95% CI]": [delta_text(row) for row in rows.itertuples()],
        "p adj.": rows.p_adjusted.map(number), "verdict": [verdict_text(row) for row in rows.itertuples()],
    })

