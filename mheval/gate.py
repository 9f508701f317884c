"""The CI regression gate: compares a run with a committed baseline (`mheval.baselines`) and reports the verdict as a
terminal table, Markdown, JUnit XML and an exit code; and the `mheval gate` / `mheval baseline` commands.

- Rows are model × language, compared on the prompts both sides share by a paired bootstrap over prompts.
- A row regresses when its difference is worse than max(abs, rel × baseline value) and its 95% interval excludes 0.
- A baseline prompt whose clip has no usable score in the run (clip failed, metric failed or not applicable) fails
  its row: a model that stops producing a language must not pass.
- A row with fewer than `min_prompts` shared prompts (default 5) is "insufficient": shown, never passed or failed.
- Nothing compared (labels renamed, every row insufficient or missing) is exit 2, not a pass.
- Rows or prompts present on one side only are warnings.
- Numbers made with another ASR model or decoding settings, another text normaliser, another metric version or
  configuration, or on another suite are not comparable: the gate refuses with exit code 2 and names the change.
"""
from __future__ import annotations

import argparse
import math
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from mheval.baselines import (COMPARED, FAILED, IMPROVED, INSUFFICIENT, MIN_PROMPTS, MISSING, NEW, PASS, REGRESSION,
                            CannotCompare, RowComparison, Tolerance, check_comparable, compare_prompts,
                            metric_scores, read_baseline, write_baseline)
from mheval.stats import DEFAULT_RESAMPLES
from mheval.store import OldStoreError

EXIT_PASS = 0
EXIT_REGRESSION = 1
EXIT_CANNOT_COMPARE = 2


@dataclass
class GateOutcome:
    metric: str
    tolerance: Tolerance
    rows: list[RowComparison] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    refusal: str | None = None
    source: str | None = None         # which clips were gated: the run's latest invocation (run id, suite hash, seed)
    notes: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)  # (model, language) → notes
    min_prompts: int = MIN_PROMPTS

    @property
    def failures(self) -> list[RowComparison]:
        return [row for row in self.rows if row.verdict in (REGRESSION, FAILED)]

    @property
    def compared(self) -> list[RowComparison]:
        return [row for row in self.rows if row.verdict in COMPARED]

    @property
    def undecided(self) -> list[RowComparison]:
        return [row for row in self.rows if row.verdict in (INSUFFICIENT, MISSING)]

    @property
    def exit_code(self) -> int:
        if self.refusal is not None or not self.compared:
            return EXIT_CANNOT_COMPARE
        return EXIT_REGRESSION if self.failures else EXIT_PASS

    @property
    def headline(self) -> str:
        if self.refusal is not None:
            return f"cannot compare: {self.refusal}"
        if not self.compared:
            failed = [f"{row.model}/{row.language}" for row in self.rows if row.verdict == FAILED]
            because = f"; baseline prompts without a usable score in the run: {', '.join(failed)}" if failed else ""
            return (f"cannot compare: nothing was compared: no model × language row has {self.min_prompts} or more "
                    f"prompts with usable {self.metric} scores on both sides{because}{self._undecided_text()}")
        if self.failures:
            regressions = sum(row.verdict == REGRESSION for row in self.failures)
            failed = len(self.failures) - regressions
            kinds = [f"{regressions} {self.metric} regression(s) beyond {self.tolerance}"] if regressions else []
            kinds += [f"{failed} row(s) with baseline prompts failing in the run"] if failed else []
            names = ", ".join(f"{row.model}/{row.language}" for row in self.failures)
            return f"FAIL: {' and '.join(kinds)}: {names}{self._undecided_text()}"
        return (f"PASS: no {self.metric} regression beyond {self.tolerance} in {len(self.compared)} row(s)"
                f"{self._undecided_text()}")

    def _undecided_text(self) -> str:
        parts = [f"{verdict}: " + ", ".join(f"{row.model}/{row.language}" for row in self.rows if row.verdict == verdict)
                 for verdict in (INSUFFICIENT, MISSING) if any(row.verdict == verdict for row in self.rows)]
        return f" (not decided — {'; '.join(parts)})" if parts else ""


def gate(run_dir: Path | str, baseline_path: Path | str, metric: str = "wer", tolerance: Tolerance = Tolerance(),
         resamples: int = DEFAULT_RESAMPLES, min_prompts: int = MIN_PROMPTS) -> GateOutcome:
    outcome = GateOutcome(metric, tolerance, min_prompts=min_prompts)
    try:
        baseline = read_baseline(baseline_path)
        run = metric_scores(run_dir, metric)
        outcome.source = f"{run_dir}: {run.source['description']}"
        outcome.notes = run.notes
        outcome.warnings += check_comparable(baseline, run)
    except (CannotCompare, FileNotFoundError, OldStoreError) as err:
        outcome.refusal = str(err)
        return outcome
    outcome.rows = compare_prompts(baseline.prompts, run.prompts, baseline.lower_is_better, tolerance, resamples,
                                   min_prompts, run.unusable)
    outcome.warnings += [f"{row.model}/{row.language}: {row.verdict}: {note}" for row in outcome.rows
                         for note in row.notes]
    baseline_prompts = set(zip(baseline.prompts.model, baseline.prompts.item_id))
    outcome.warnings += [f"no usable score (not in the baseline): {row.model}/{row.item_id}: {row.reason}"
                         for row in run.unusable.itertuples() if (row.model, row.item_id) not in baseline_prompts]
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
             _number(row.current), _delta_text(row), _number(row.threshold), row.verdict,
             "; ".join(outcome.notes.get((row.model, row.language), ()))] for row in outcome.rows]


def footnote(outcome: GateOutcome) -> str:
    text = (f"Δ = run − baseline, paired bootstrap over prompts; a row regresses when Δ is worse than the tolerance "
            f"max({outcome.tolerance.absolute:g}, {outcome.tolerance.relative:g} × baseline) and its 95% interval "
            f"excludes 0; a row fails when a baseline prompt has no usable score in the run; rows with fewer than "
            f"{outcome.min_prompts} shared prompts are insufficient and not decided.")
    if any(row.single_prompt for row in outcome.rows):
        text += " Rows with a single shared prompt have no interval: their point difference decides."
    return text


TABLE_HEADER = ["model", "language", "prompts", "baseline", "run", "Δ [95% CI]", "tolerance", "result", "notes"]
VERDICT_STYLE = {REGRESSION: "bold red", FAILED: "bold red", IMPROVED: "green", PASS: "", INSUFFICIENT: "yellow",
                 MISSING: "yellow", NEW: "yellow"}


def print_outcome(outcome: GateOutcome, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console(width=None if sys.stdout.isatty() else 120)
    if outcome.source:
        console.print(f"gated: {outcome.source}", highlight=False)
    if outcome.rows:
        table = Table(title=f"gate: {outcome.metric} vs baseline (tolerance {outcome.tolerance})")
        for name in TABLE_HEADER:
            table.add_column(name, justify="left" if name in ("model", "language", "result", "notes") else "right")
        for row, cells in zip(outcome.rows, table_rows(outcome)):
            table.add_row(*cells, style=VERDICT_STYLE[row.verdict])
        console.print(table)
        console.print(footnote(outcome), highlight=False)
    for warning in outcome.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    style = {EXIT_PASS: "bold green", EXIT_REGRESSION: "bold red"}.get(outcome.exit_code, "bold yellow")
    console.print(f"[{style}]{outcome.headline}[/{style}]", highlight=False)


def markdown(outcome: GateOutcome) -> str:
    """A pull-request summary: verdict, table, warnings."""
    lines = [f"### mheval gate ({outcome.metric}): {outcome.headline}", ""]
    if outcome.source:
        lines += [f"Gated: {outcome.source}", ""]
    if outcome.rows:
        lines += ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
        for cells in table_rows(outcome):
            cells[-2] = f"**{cells[-2]}**" if cells[-2] in (REGRESSION, FAILED) else cells[-2]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", footnote(outcome)]
    if outcome.warnings:
        lines += ["", "**Warnings**", ""] + [f"- {warning}" for warning in outcome.warnings]
    return "\n".join(lines) + "\n"


def junit(outcome: GateOutcome) -> str:
    """JUnit XML: one test case per model × language; a refusal is one errored case."""
    suite = ET.Element("testsuite", name=f"mheval gate {outcome.metric}")
    if outcome.source:
        ET.SubElement(ET.SubElement(suite, "properties"), "property", name="gated", value=outcome.source)
    if outcome.exit_code == EXIT_CANNOT_COMPARE:
        case = ET.SubElement(suite, "testcase", classname=f"mheval.gate.{outcome.metric}", name="comparable")
        ET.SubElement(case, "error", message=outcome.headline.removeprefix("cannot compare: "))
    for row, cells in zip(outcome.rows, table_rows(outcome)):
        case = ET.SubElement(suite, "testcase", classname=f"mheval.gate.{outcome.metric}.{row.model}",
                             name=row.language)
        summary = ", ".join(f"{name}={cell}" for name, cell in zip(TABLE_HEADER[2:7], cells[2:7]))
        if row.verdict == REGRESSION:
            ET.SubElement(case, "failure", message=f"{outcome.metric} regression: {summary}")
        elif row.verdict == FAILED:
            ET.SubElement(case, "failure", message=f"{outcome.metric}: {'; '.join(row.notes)}")
        elif row.verdict in (INSUFFICIENT, MISSING, NEW):
            ET.SubElement(case, "skipped", message=f"{row.verdict}: {'; '.join(row.notes)}")
        else:
            ET.SubElement(case, "system-out").text = f"{row.verdict}: {summary}" + (f" ({cells[-1]})" if cells[-1] else "")
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
  0  pass: every compared row passed (or improved); rows not decided are named in the verdict line
  1  fail: a model × language row regressed beyond the tolerance, or a baseline prompt has no usable score in the
     run (its clip failed, or the metric failed or was not applicable)
  2  cannot compare: nothing was compared (no row with enough shared prompts: labels renamed, languages missing),
     or the run was scored with another ASR model, decoding settings, text normaliser, metric version or suite
     than the baseline (the message names which), or an input is missing or unreadable

A row regresses when the point difference (run − baseline) over the prompts both share is worse than
max(abs, rel × baseline value) AND its 95% paired-bootstrap interval excludes 0 (for metrics where higher is
better, the sign is flipped). A row with fewer than --min-prompts shared prompts is "insufficient": shown, not
decided. Rows or prompts present on one side only are warnings.

example (CI):
  mheval run --suite ci --models puppet --metrics wer --out runs/ci
  mheval gate --run runs/ci --baseline baselines/ci-puppet.json \\
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
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples (default %(default)s)")
    parser.add_argument("--min-prompts", type=int, default=MIN_PROMPTS,
                        help=f"rows with fewer shared prompts are reported as insufficient, not decided "
                             f"(default {MIN_PROMPTS})")
    parser.add_argument("--markdown", type=Path, help="also write a Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")
    parser.add_argument("--junit", type=Path, help="also write JUnit XML")
    parser.set_defaults(handler=cmd_gate)


def _tolerance_argument(text: str) -> Tolerance:
    try:
        return Tolerance.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def cmd_gate(args) -> int:
    outcome = gate(args.run, args.baseline, args.metric, args.tolerance, args.resamples, args.min_prompts)
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
