"""`mheval compare RUN_DIR`: paired verdicts for every model pair, metric and language of a run (`mheval.verdicts`),
with the human win rates of the run's review studies beside them, as a terminal table, JSON and Markdown."""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from mheval.results import ALL, RunResults
from mheval.stats import DEFAULT_RESAMPLES, MIN_PROMPTS
from mheval.verdicts import (A_BETTER, B_BETTER, DEFAULT_ALPHA, VerdictSettings, Verdicts, verdict_lines,
                             verdict_table, verdicts)

EXIT_OK = 0
DESCRIPTION = """\
Is model A better than model B? For every pair of models of a run (or each model against --reference), every
metric's headline and every language plus the macro "all": the paired difference A − B on the prompts both share,
its paired bootstrap 95% interval, a sign-flip permutation p-value, the p-value adjusted over the whole family of
comparisons shown (Holm; --fdr for Benjamini–Hochberg), and a verdict: a_better, b_better, no_difference (with the
number of prompts that would detect the observed difference at 80% power) or insufficient (fewer than
--min-prompts shared prompts). Directions follow each metric (sync's signed offset: closer to 0 is better). Where
the run has review studies (RUN_DIR/studies/*), their human win rates for the same pairs are shown beside."""


def add_compare_parser(sub) -> None:
    parser = sub.add_parser("compare", help="paired verdicts: is model A better than B, where, by how much, how sure",
                            description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("--models", default=None, help="comma-separated model labels (default: every model)")
    parser.add_argument("--reference", default=None, metavar="MODEL",
                        help="compare each model against this one (rows: A = model, B = reference) instead of every "
                             "pair")
    parser.add_argument("--metrics", default=None, help="comma-separated metrics (default: every scored metric)")
    parser.add_argument("--fdr", action="store_true",
                        help="adjust with Benjamini–Hochberg (false discovery rate) instead of Holm (family-wise)")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="level of the verdicts (default %(default)g)")
    parser.add_argument("--min-prompts", type=int, default=MIN_PROMPTS,
                        help="fewer shared prompts than this: insufficient, not tested (default %(default)s)")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES,
                        help="bootstrap resamples for the intervals (default %(default)s)")
    parser.add_argument("--all-rows", action="store_true",
                        help="print every row; by default the terminal shows decided rows and the `all` rows")
    parser.add_argument("--json", type=Path, help="write every row as JSON (fields: model_a, model_b, metric, field, "
                                                  "language, n, delta, ci_low, ci_high, p, p_adjusted, verdict, …)")
    parser.add_argument("--markdown", type=Path, help="write every row as Markdown")
    parser.set_defaults(handler=cmd_compare)


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip()) if text else ()


def cmd_compare(args: argparse.Namespace) -> int:
    from mheval.report import make_console

    results = RunResults.load(args.run_dir)
    settings = VerdictSettings(models=_names(args.models), reference=args.reference, metrics=_names(args.metrics),
                               adjustment="fdr_bh" if args.fdr else "holm", alpha=args.alpha,
                               min_prompts=args.min_prompts, resamples=args.resamples)
    table = verdicts(results, settings)
    table.human = human_win_rates(results.directory, table.pairs())
    console = make_console(wide=True)
    console.print(results.describe(), highlight=False)
    print_verdicts(table, console, every_row=args.all_rows)
    if args.json:
        table.write_json(args.json)
    if args.markdown:
        from mheval.files import write_bytes_atomic

        write_bytes_atomic(args.markdown, table.to_markdown().encode())
    return EXIT_OK


def print_verdicts(table: Verdicts, console: Console, every_row: bool = False) -> None:
    shown = table.rows if every_row else table.rows[table.rows.verdict.isin([A_BETTER, B_BETTER])
                                                    | (table.rows.language == ALL)]
    text = verdict_table(Verdicts(shown, table.settings))
    view = Table(title="paired verdicts (A − B over shared prompts)", show_lines=False)
    for column in text.columns:
        view.add_column(column, justify="right" if column in ("n", "A value", "B value", "p adj.") else "left",
                        overflow="fold")
    for row in text.itertuples(index=False):
        view.add_row(*map(str, row))
    console.print(view)
    console.print(table.statement(), highlight=False, markup=False)
    hidden = len(table.rows) - len(shown)
    if hidden:
        console.print(f"{hidden} per-language row(s) without a difference not shown (--all-rows, --json)",
                      highlight=False, markup=False)
    for line in verdict_lines(table):
        console.print(line, highlight=False, markup=False)
    if not table.human.empty:
        console.print(human_table(table.human))


def human_win_rates(run_dir: Path, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """For each review study of the run (RUN_DIR/studies/*) with votes on a pair: per criterion and language, the
    share of votes for A, ties and for B (all votes), oriented as the verdict rows are (A first)."""
    from mheval.review.report import build_report
    from mheval.review.storage import StudyStore

    rows = []
    for database in sorted((run_dir / "studies").glob("*/study.sqlite")):
        store = StudyStore(database.parent)
        try:
            shares = build_report(store, run_dir=run_dir).shares
        finally:
            store.close()
        for model_a, model_b in pairs:
            for flipped, matchup in ((False, f"{model_a} vs {model_b}"), (True, f"{model_b} vs {model_a}")):
                for row in shares[shares.matchup == matchup].itertuples() if not shares.empty else []:
                    a, b = (row.loss, row.win) if flipped else (row.win, row.loss)
                    rows.append({"study": database.parent.name, "model_a": model_a, "model_b": model_b,
                                 "criterion": row.criterion, "language": row.language, "votes": row.n,
                                 "a_share": a, "tie_share": row.tie, "b_share": b})
    return pd.DataFrame(rows)


def human_table(human: pd.DataFrame) -> Table:
    view = Table(title="human review of the same pairs (share of votes)")
    for column in ("study", "A", "B", "criterion", "language", "votes", "A wins", "ties", "B wins"):
        view.add_column(column, justify="right" if column in ("votes", "A wins", "ties", "B wins") else "left")
    for row in human.itertuples():
        view.add_row(row.study, row.model_a, row.model_b, row.criterion, row.language, str(row.votes),
                     f"{row.a_share:.0%}", f"{row.tie_share:.0%}", f"{row.b_share:.0%}")
    return view
