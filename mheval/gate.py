"""The CI regression gate, and the committed baselines it compares against.

`mheval baseline write` stores, per model and language, a metric's summary value and every prompt's share of it:
the prompt's value and weight (for WER: its error rate and reference length, so errors = wer × reference_length),
together with what produced the numbers (metric version, text normaliser, ASR model and weights hash).

`mheval gate` compares a new run with such a baseline:

- Rows are model × language. Each row is compared on the prompts both sides share (same item id and same item
  content), by a paired bootstrap over prompts of the difference run − baseline (`mheval.stats.paired_bootstrap`).
- A row fails only when the whole 95% interval of the regression lies above max(abs, rel × baseline value), so a
  noisy difference never fails. With one shared prompt there is nothing to resample (the bootstrap distribution
  is a point), and the point difference decides; the output says so.
- Rows or prompts present on one side only, and clips of the run without a usable score, are warnings.
- Numbers made with another ASR model or decoding settings, another text normaliser, another metric version or
  configuration, or on another suite are not comparable: the gate refuses with exit code 2 and names the change.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mheval.metrics import metric_class
from mheval.registry import config_hash
from mheval.results import MetricKey, clip_table, latest_metric_keys
from mheval.stats import DEFAULT_RESAMPLES, Estimate, bootstrap, paired_bootstrap
from mheval.store import RunStore, write_json_atomic

BASELINE_FORMAT = "mheval-baseline/1"

EXIT_PASS = 0
EXIT_REGRESSION = 1
EXIT_CANNOT_COMPARE = 2

# Keys of the ASR identity (mheval.asr.ASR.identity). Those naming the weights mean another ASR model; the ones
# listed as minor (where the code ran, library versions, machine-specific paths) only warn; any other key that
# changes (decoding settings, dtype, keys added later) means other transcripts, so the gate refuses.
ASR_WEIGHT_KEYS = ("name", "sha256", "converter_version")
ASR_DECODING_KEY = "decoding"
ASR_MINOR_KEYS = ("path", "device", "torch", "openai_whisper", "faster_whisper", "ctranslate2")

PASS, REGRESSION, IMPROVED, MISSING, NEW = "pass", "regression", "improved", "missing", "new"
PROMPT_COLUMNS = ["model", "language", "item_id", "item_sha256", "value", "weight"]


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
    unusable: list[str] = field(default_factory=list)      # "model/item: reason" for clips without a usable score

    @property
    def lower_is_better(self) -> bool:
        return metric_class(self.metric).lower_is_better


# -- reading a run ---------------------------------------------------------------------------------------------------

def metric_scores(run_dir: Path | str, metric: str = "wer") -> MetricScores:
    """The latest scores of `metric` in a run directory, restricted to the suite, models and seed of its manifest."""
    store = RunStore.open_existing(run_dir)
    try:
        manifest = store.manifest()
        key = next((k for k in latest_metric_keys(store) if k.name == metric), None)
        if key is None:
            raise CannotCompare(f"{run_dir}: the run has no {metric} scores")
        suite = manifest.get("suite", {}).get("name")
        models = list(manifest.get("models", {})) or None
        table = clip_table(store, suite, models, [key], manifest.get("seed"))
        hashes = store.items(suite)[["suite", "item_id", "item_hash"]]
    finally:
        store.close()
    table = table.merge(hashes, on=["suite", "item_id"], how="left")
    usable = table[(table.clip_status == "ok") & (table[f"{metric}.status"] == "ok")]
    return MetricScores(
        metric=metric,
        suite=suite,
        prompts=prompt_values(usable, metric),
        scorer=_scorer(key, usable, manifest),
        source={"run": str(run_dir), "suite_sha256": manifest.get("suite", {}).get("sha256"),
                "seed": manifest.get("seed"), "git": manifest.get("git"), "run_created": manifest.get("created")},
        unusable=[f"{row['model']}/{row['item_id']}: {_unusable_reason(row, metric)}"
                  for row in table.drop(usable.index).to_dict("records")],
    )


def prompt_values(clips: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Clips with an ok score → one row per model × prompt: the ratio of sums over its clips, and the weight sum."""
    cls = metric_class(metric)
    if clips.empty:
        return pd.DataFrame(columns=PROMPT_COLUMNS)
    values = pd.to_numeric(clips[f"{metric}.{cls.headline}"], errors="coerce")
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
    if row["clip_status"] != "ok":
        return f"clip failed ({str(row['clip_error']).splitlines()[0]})"
    return f"{metric} {row[f'{metric}.status']}"


def _scorer(key: MetricKey, clips: pd.DataFrame, manifest: dict) -> dict[str, Any]:
    """What produced the numbers: metric version and config, and the normaliser and ASR recorded with each score."""
    scorer: dict[str, Any] = {"metric_version": key.version, "config_hash": key.config_hash}
    config = manifest.get("metrics", {}).get(key.name, {}).get("config")
    if config is not None and config_hash(config) == key.config_hash:
        scorer["config"] = config
    details = [json.loads(text) for text in clips.get(f"{key.name}.detail", []) if isinstance(text, str)]
    for name in ("normalizer", "asr"):
        distinct = {json.dumps(d[name], sort_keys=True) for d in details if isinstance(d, dict) and name in d}
        if len(distinct) > 1:
            raise CannotCompare(f"the run's {key.name} scores were made with {len(distinct)} different {name} "
                                "settings; re-score the run with one")
        if distinct:
            scorer[name] = json.loads(distinct.pop())
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
    old_asr, new_asr = old.get("asr") or {}, new.get("asr") or {}
    differing = {key for key in set(old_asr) | set(new_asr) if old_asr.get(key) != new_asr.get(key)}
    if differing & set(ASR_WEIGHT_KEYS):
        changes.append(f"the ASR model changed: baseline {_asr_name(old_asr)}, run {_asr_name(new_asr)}")
    elif ASR_DECODING_KEY in differing:
        changes.append("the ASR decoding settings changed: "
                       + _dict_changes(old_asr.get(ASR_DECODING_KEY) or {}, new_asr.get(ASR_DECODING_KEY) or {}))
    elif differing - set(ASR_MINOR_KEYS):
        keys = differing - set(ASR_MINOR_KEYS)
        changes.append("the ASR settings changed: " + _dict_changes({key: old_asr.get(key) for key in keys},
                                                                    {key: new_asr.get(key) for key in keys}))
    if not changes and old.get("metric_version") != new.get("metric_version"):
        changes.append(f"the {run.metric} metric version changed: baseline {old.get('metric_version')}, "
                       f"run {new.get('metric_version')}")
    if not changes and old.get("config_hash") != new.get("config_hash"):
        changes.append(f"the {run.metric} configuration changed: "
                       + _dict_changes(old.get("config") or {}, new.get("config") or {}))
    if changes:
        raise CannotCompare("; ".join(changes) + ". These numbers are not comparable: score the run the same way "
                            "as the baseline, or write a new baseline with `mheval baseline write`.")
    return [f"ASR {key} differs: baseline {old_asr.get(key)}, run {new_asr.get(key)}" for key in sorted(differing)]


def _asr_name(identity: dict) -> str:
    if not identity:
        return "(not recorded)"
    return f"{identity.get('name')} (weights sha256 {str(identity.get('sha256') or '?')[:12]}…)"


def _dict_changes(old: dict, new: dict) -> str:
    keys = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
    return ", ".join(f"{key}: {old.get(key)!r} → {new.get(key)!r}" for key in keys) or "(details not recorded)"


@dataclass(frozen=True)
class RowComparison:
    model: str
    language: str
    verdict: str                      # pass | regression | improved | missing | new
    baseline: float = math.nan        # on the shared prompts
    current: float = math.nan
    delta: Estimate | None = None     # current − baseline, paired over the shared prompts
    threshold: float = math.nan
    notes: tuple[str, ...] = ()       # prompts or rows present on one side only

    @property
    def single_prompt(self) -> bool:
        """One shared prompt: no interval, the point difference decided."""
        return self.delta is not None and math.isnan(self.delta.low)


def compare_prompts(baseline: pd.DataFrame, run: pd.DataFrame, lower_is_better: bool, tolerance: Tolerance,
                    resamples: int = DEFAULT_RESAMPLES) -> list[RowComparison]:
    """Per model × language: the paired difference on shared prompts and its verdict against the tolerance."""
    old_rows = dict(list(baseline.groupby(["model", "language"])))
    new_rows = dict(list(run.groupby(["model", "language"])))
    comparisons = []
    for model, language in sorted(set(old_rows) | set(new_rows)):
        old, new = old_rows.get((model, language)), new_rows.get((model, language))
        if old is None:
            comparisons.append(RowComparison(model, language, NEW, current=_ratio(new),
                                             notes=(f"not in the baseline ({len(new)} prompts)",)))
        elif new is None:
            comparisons.append(RowComparison(model, language, MISSING, baseline=_ratio(old),
                                             notes=(f"no usable scores in the run ({len(old)} prompts expected)",)))
        else:
            comparisons.append(_compare_row(model, language, old, new, lower_is_better, tolerance, resamples))
    return comparisons


def _compare_row(model, language, old, new, lower_is_better, tolerance, resamples) -> RowComparison:
    same_content = old.merge(new, on=["item_id", "item_sha256"]).item_id
    notes = _prompt_notes(old, new, set(same_content))
    old, new = old[old.item_id.isin(same_content)], new[new.item_id.isin(same_content)]
    if old.empty:
        return RowComparison(model, language, MISSING, notes=("no prompt in common with the baseline", *notes))
    delta = paired_bootstrap(old.item_id.to_numpy(), old.value.to_numpy(), old.weight.to_numpy(),
                             new.item_id.to_numpy(), new.value.to_numpy(), new.weight.to_numpy(), resamples=resamples)
    baseline_value = _ratio(old)
    threshold = tolerance.threshold(baseline_value)
    low, high = (delta.value, delta.value) if math.isnan(delta.low) else (delta.low, delta.high)
    worse_low, worse_high = (low, high) if lower_is_better else (-high, -low)
    verdict = REGRESSION if worse_low > threshold else IMPROVED if worse_high < -threshold else PASS
    return RowComparison(model, language, verdict, baseline_value, _ratio(new), delta, threshold, tuple(notes))


def _prompt_notes(old: pd.DataFrame, new: pd.DataFrame, same: set[str]) -> list[str]:
    notes = []
    for what, ids in (("only in the baseline", set(old.item_id) - set(new.item_id)),
                      ("only in the run", set(new.item_id) - set(old.item_id)),
                      ("text changed since the baseline", (set(old.item_id) & set(new.item_id)) - same)):
        if ids:
            notes.append(f"{len(ids)} prompt(s) {what}: {', '.join(sorted(ids))}")
    return notes


def _ratio(prompts: pd.DataFrame) -> float:
    return float((prompts.value * prompts.weight).sum() / prompts.weight.sum())


@dataclass
class GateOutcome:
    metric: str
    tolerance: Tolerance
    rows: list[RowComparison] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    refusal: str | None = None

    @property
    def regressions(self) -> list[RowComparison]:
        return [row for row in self.rows if row.verdict == REGRESSION]

    @property
    def exit_code(self) -> int:
        if self.refusal is not None:
            return EXIT_CANNOT_COMPARE
        return EXIT_REGRESSION if self.regressions else EXIT_PASS

    @property
    def headline(self) -> str:
        if self.refusal is not None:
            return f"cannot compare: {self.refusal}"
        if self.regressions:
            names = ", ".join(f"{row.model}/{row.language}" for row in self.regressions)
            return f"FAIL: {len(self.regressions)} {self.metric} regression(s) beyond {self.tolerance}: {names}"
        return f"PASS: no {self.metric} regression beyond {self.tolerance} in {len(self.rows)} row(s)"


def gate(run_dir: Path | str, baseline_path: Path | str, metric: str = "wer", tolerance: Tolerance = Tolerance(),
         resamples: int = DEFAULT_RESAMPLES) -> GateOutcome:
    outcome = GateOutcome(metric, tolerance)
    try:
        baseline = read_baseline(baseline_path)
        run = metric_scores(run_dir, metric)
        outcome.warnings += check_comparable(baseline, run)
    except (CannotCompare, FileNotFoundError) as err:
        outcome.refusal = str(err)
        return outcome
    outcome.rows = compare_prompts(baseline.prompts, run.prompts, baseline.lower_is_better, tolerance, resamples)
    outcome.warnings += [f"{row.model}/{row.language}: {row.verdict}: {note}" for row in outcome.rows
                         for note in row.notes]
    outcome.warnings += [f"no usable score: {entry}" for entry in run.unusable]
    return outcome


# -- output ----------------------------------------------------------------------------------------------------------

def _number(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3f}"


def _delta_text(row: RowComparison) -> str:
    if row.delta is None:
        return "–"
    text = f"{row.delta.value:+.3f}"
    if not math.isnan(row.delta.low):
        text += f" [{row.delta.low:+.3f}, {row.delta.high:+.3f}]"
    return text


def table_rows(outcome: GateOutcome) -> list[list[str]]:
    """Cells shared by the terminal and Markdown tables."""
    return [[row.model, row.language, str(row.delta.n if row.delta else "–"), _number(row.baseline),
             _number(row.current), _delta_text(row), _number(row.threshold), row.verdict] for row in outcome.rows]


def footnote(outcome: GateOutcome) -> str:
    text = (f"Δ = run − baseline, paired bootstrap over prompts; a row fails when the 95% interval of the regression "
            f"lies entirely beyond the tolerance max({outcome.tolerance.absolute:g}, "
            f"{outcome.tolerance.relative:g} × baseline).")
    if any(row.single_prompt for row in outcome.rows):
        text += " Rows with a single shared prompt have no interval: their point difference decides."
    return text


TABLE_HEADER = ["model", "language", "prompts", "baseline", "run", "Δ [95% CI]", "tolerance", "result"]
VERDICT_STYLE = {REGRESSION: "bold red", IMPROVED: "green", PASS: "", MISSING: "yellow", NEW: "yellow"}


def print_outcome(outcome: GateOutcome, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=None if sys.stdout.isatty() else 120)
    if outcome.rows:
        table = Table(title=f"gate: {outcome.metric} vs baseline (tolerance {outcome.tolerance})")
        for name in TABLE_HEADER:
            table.add_column(name, justify="left" if name in ("model", "language", "result") else "right")
        for row, cells in zip(outcome.rows, table_rows(outcome)):
            table.add_row(*cells, style=VERDICT_STYLE[row.verdict])
        console.print(table)
        console.print(footnote(outcome), highlight=False)
    for warning in outcome.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    style = {EXIT_PASS: "bold green", EXIT_REGRESSION: "bold red"}.get(outcome.exit_code, "bold yellow")
    console.print(f"[{style}]{outcome.headline}[/{style}]", highlight=False)


def markdown(outcome: GateOutcome) -> str:
    """A pull-request summary: verdict, table, warnings."""
    lines = [f"### mheval gate ({outcome.metric}): {outcome.headline}", ""]
    if outcome.rows:
        lines += ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
        for cells in table_rows(outcome):
            cells[-1] = f"**{cells[-1]}**" if cells[-1] == REGRESSION else cells[-1]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", footnote(outcome)]
    if outcome.warnings:
        lines += ["", "**Warnings**", ""] + [f"- {warning}" for warning in outcome.warnings]
    return "\n".join(lines) + "\n"


def junit(outcome: GateOutcome) -> str:
    """JUnit XML: one test case per model × language; a refusal is one errored case."""
    suite = ET.Element("testsuite", name=f"mheval gate {outcome.metric}")
    if outcome.refusal is not None:
        case = ET.SubElement(suite, "testcase", classname=f"mheval.gate.{outcome.metric}", name="comparable")
        ET.SubElement(case, "error", message=outcome.refusal)
    for row, cells in zip(outcome.rows, table_rows(outcome)):
        case = ET.SubElement(suite, "testcase", classname=f"mheval.gate.{outcome.metric}.{row.model}",
                             name=row.language)
        summary = ", ".join(f"{name}={cell}" for name, cell in zip(TABLE_HEADER[2:7], cells[2:7]))
        if row.verdict == REGRESSION:
            ET.SubElement(case, "failure", message=f"{outcome.metric} regression: {summary}")
        elif row.verdict in (MISSING, NEW):
            ET.SubElement(case, "skipped", message=f"{row.verdict}: {'; '.join(row.notes)}")
        else:
            ET.SubElement(case, "system-out").text = f"{row.verdict}: {summary}"
    if outcome.warnings:
        ET.SubElement(suite, "system-err").text = "\n".join(outcome.warnings)
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(case.find("failure") is not None for case in cases)))
    suite.set("errors", str(sum(case.find("error") is not None for case in cases)))
    suite.set("skipped", str(sum(case.find("skipped") is not None for case in cases)))
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


# -- command line ----------------------------------------------------------------------------------------------------

GATE_EPILOG = """\
exit codes:
  0  pass: no row regressed beyond the tolerance with 95% confidence (warnings may be printed)
  1  regression: at least one model × language row regressed beyond the tolerance
  2  cannot compare: the run was scored with another ASR model, decoding settings, text normaliser, metric
     version or suite than the baseline (the message names which), or an input is missing or unreadable

A row regresses when the lower end of the 95% paired-bootstrap interval of (run − baseline) over prompts exceeds
max(abs, rel × baseline value) (for metrics where higher is better, the sign is flipped). Rows or prompts present
on one side only are warnings.

example (CI):
  mheval run --suite smoke --models puppet --out runs/ci-smoke
  mheval gate --run runs/ci-smoke --baseline baselines/smoke-puppet.json \\
      --markdown gate.md --junit gate.xml
"""


def add_gate_parser(sub) -> None:
    parser = sub.add_parser(
        "gate", help="fail when a run regresses against a committed baseline (for CI)",
        description="Compare a run with a baseline written by `mheval baseline write`, per model and language, "
                    "with a paired bootstrap over prompts.",
        epilog=GATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run directory to check")
    parser.add_argument("--baseline", type=Path, required=True, help="baseline JSON file")
    parser.add_argument("--metric", default="wer", help="metric to gate on (default wer)")
    parser.add_argument("--tolerance", type=_tolerance_argument, default=Tolerance(),
                        help=f"abs=X,rel=Y: a regression counts beyond max(X, Y × baseline) (default {Tolerance()})")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples (default 1000)")
    parser.add_argument("--markdown", type=Path, help="also write a Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")
    parser.add_argument("--junit", type=Path, help="also write JUnit XML")
    parser.set_defaults(handler=cmd_gate)


def _tolerance_argument(text: str) -> Tolerance:
    try:
        return Tolerance.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def cmd_gate(args) -> int:
    outcome = gate(args.run, args.baseline, args.metric, args.tolerance, args.resamples)
    print_outcome(outcome)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(outcome))
    if args.junit:
        args.junit.parent.mkdir(parents=True, exist_ok=True)
        args.junit.write_text(junit(outcome))
    return outcome.exit_code


def add_baseline_parser(sub) -> None:
    parser = sub.add_parser("baseline", help="write the baseline a CI gate compares against",
                            description="Baselines for `mheval gate`.")
    actions = parser.add_subparsers(dest="baseline_command", metavar="ACTION", required=True)
    write = actions.add_parser(
        "write", help="write a baseline from a run",
        description="Write a human-readable JSON baseline from a run: per model and language the summary value, "
                    "n, and every prompt's value and weight, with the metric version, text normaliser and ASR "
                    "model/weights hash that produced them. Commit it; `mheval gate` compares runs against it.")
    write.add_argument("--run", type=Path, required=True, help="run directory")
    write.add_argument("--out", type=Path, required=True, help="baseline file to write (JSON)")
    write.add_argument("--metric", default="wer", help="metric (default wer)")
    write.set_defaults(handler=cmd_baseline_write)


def cmd_baseline_write(args) -> int:
    try:
        document = write_baseline(args.run, args.out, args.metric)
    except CannotCompare as err:
        print(f"mheval: error: {err}", file=sys.stderr)
        return EXIT_CANNOT_COMPARE
    print(f"wrote {args.out}: {args.metric} for {len(document['rows'])} model × language row(s), "
          f"{sum(len(row['prompts']) for row in document['rows'])} prompt(s)")
    return EXIT_PASS
