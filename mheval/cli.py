"""The `mheval` command line. Each subcommand is a small function; `mheval SUBCOMMAND --help` explains it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mheval.compare_command import add_compare_parser
from mheval.dashboard_command import add_dashboard_parser
from mheval.executors import add_executor_arguments, executor_settings
from mheval.gate import add_baseline_parser, add_gate_parser
from mheval.review.command import add_review_parser
from mheval.listing import add_listing_parsers
from mheval.validate import add_validate_parser
from mheval.weights_command import add_weights_arguments, add_weights_parser, apply_weights_arguments

EXIT_OK = 0
EXIT_INPUT_ERROR = 2          # bad arguments, unreadable suite, unknown model or metric
DEFAULT_MODELS = ("puppet", "magihuman")

EXIT_PARTIAL = 3              # the run finished but some clips or scores failed (they are recorded in the store)

DESCRIPTION = """\
Evaluate and compare human-centric audio-video generators.

A run takes a prompt suite (prompts/*.toml), has each model adapter generate a clip per item, scores every clip
(Whisper WER/CER per language and the other registered metrics), stores everything in a run directory (SQLite,
clips, manifest, parquet/CSV/JSON exports) and prints a models × languages comparison with 95% intervals.
Re-running the same command only computes what is missing.
"""

EPILOG = """\
examples:
  mheval run --suite smoke
  mheval run --suite multilingual --models puppet,ltx=clips:/data/ltx23 --limit 2
  mheval run --suite smoke --models puppet,late=puppet --model-option late.shift_ms=200
  mheval report runs/smoke

exit codes: 0 success; 2 bad input (message names the file and problem); 3 finished, but some clips or scores
failed (recorded per clip in the run store, listed in the output). `mheval gate` documents its own codes.
"""


def _key_values(pairs: list[str], what: str) -> dict[str, dict[str, str]]:
    """`OWNER.KEY=VALUE` strings → {OWNER: {KEY: VALUE}}."""
    parsed: dict[str, dict[str, str]] = {}
    for pair in pairs:
        target, sep, value = pair.partition("=")
        owner, dot, key = target.partition(".")
        if not sep or not dot or not owner or not key:
            raise ValueError(f"{what} {pair!r} must look like NAME.KEY=VALUE")
        parsed.setdefault(owner, {})[key] = value
    return parsed


def _split_models(values: list[str]) -> list[str]:
    models = []
    for value in values:
        models += [part for part in value.split(",") if part.strip()] if "command:" not in value else [value]
    return models


def add_run_parser(sub) -> None:
    from mheval.progress import DEFAULT_INTERVAL
    from mheval.runner import DEFAULT_MAX_CLIP_SECONDS, DEFAULT_SEED

    parser = sub.add_parser(
        "run", help="generate and score a suite with one or more models",
        description="Generate a clip per suite item with each model, score every clip, store and print results.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="multilingual", help="suite name in prompts/ or a path to a .toml file")
    parser.add_argument("--models", action="append", default=None,
                        help="comma-separated [LABEL=]ADAPTER[:ARG] (repeatable; a command: spec takes a whole "
                             "--models). Adapters: %s. Default: %s (the reference puppet and the bundled generator, "
                             "a tiny random configuration without checkpoints)" % (", ".join(_adapter_names()),
                                                                                  ",".join(DEFAULT_MODELS)))
    parser.add_argument("--model-option", action="append", default=[], metavar="LABEL.KEY=VALUE",
                        help="adapter option, e.g. puppet.shift_ms=120")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated metric names (default: all: %s)" % ", ".join(_metric_names()))
    parser.add_argument("--metric-option", action="append", default=[], metavar="METRIC.KEY=VALUE",
                        help="metric option, e.g. wer.beam_size=1, wer.device=cuda, wer.engine=openai-whisper")
    parser.add_argument("--limit", type=int, default=None, help="at most N items per language")
    parser.add_argument("--languages", default=None, help="comma-separated language codes (zh,yue,en,ja,ko,de,fr)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generation seed (default %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="run directory (default runs/<suite>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--progress-interval", type=float, default=DEFAULT_INTERVAL, metavar="SECONDS",
                        help="when stderr is not a terminal (CI logs), one progress line per bar at most this often "
                             "(default %(default)g)")
    add_executor_arguments(parser)
    parser.add_argument("--max-clip-seconds", type=float, default=DEFAULT_MAX_CLIP_SECONDS,
                        help="refuse (record as failed) any clip that plays longer than this many seconds "
                             "(default %(default)g)")
    add_weights_arguments(parser)
    parser.set_defaults(handler=cmd_run)


def _adapter_names() -> list[str]:
    from mheval.adapters import adapter_names

    return adapter_names()


def _metric_names() -> list[str]:
    from mheval.metrics import metric_names

    return metric_names()


def cmd_run(args: argparse.Namespace) -> int:
    from mheval.runner import RunRequest, run

    apply_weights_arguments(args)
    request = RunRequest(
        suite=args.suite,
        models=_split_models(args.models or list(DEFAULT_MODELS)),
        out=args.out,
        limit=args.limit,
        languages=args.languages.split(",") if args.languages else None,
        seed=args.seed,
        metrics=args.metrics.split(",") if args.metrics else None,
        model_options=_key_values(args.model_option, "--model-option"),
        metric_options=_key_values(args.metric_option, "--metric-option"),
        argv=sys.argv,
        progress=not args.no_progress,
        progress_interval=args.progress_interval,
        executor=executor_settings(args, _key_values(args.ray_worker, "--ray-worker")),
        max_clip_seconds=args.max_clip_seconds,
    )
    outcome = run(request)
    return _report_outcome(outcome)


def add_generate_parser(sub) -> None:
    # Arguments pass through unparsed ('+' prefix: '--x' is not an option here) so `mheval --help` never imports
    # torch; `python -m model generate` parses them and prints its own help.
    parser = sub.add_parser("generate", add_help=False, prefix_chars="+",
                            help="one clip from the bundled daVinci-MagiHuman pipeline (python -m model generate; "
                                 "--help for its options)")
    parser.add_argument("arguments", nargs=argparse.REMAINDER)
    parser.set_defaults(handler=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from model.__main__ import main as model_main

    return model_main(["generate", *args.arguments], prog="mheval")


def _report_outcome(outcome) -> int:
    from rich.markup import escape

    from mheval.report import make_console, print_results
    from mheval.results import RunResults

    console = make_console()
    for label, coverage in outcome.coverage.items():
        if coverage.missing:
            console.print(f"[yellow]{label}: no clip for {len(coverage.missing)} item(s): "
                          f"{', '.join(coverage.missing[:10])}{' …' if len(coverage.missing) > 10 else ''}[/yellow]")
        if coverage.extra:
            console.print(f"[yellow]{label}: {len(coverage.extra)} file(s) match no item: "
                          f"{', '.join(coverage.extra[:10])}{' …' if len(coverage.extra) > 10 else ''}[/yellow]")
    results = RunResults.from_store(outcome.store, outcome.record)
    print_results(results, console=console)
    for row in results.errors.itertuples():
        console.print(f"[red]failed[/red] {escape(f'{row.model} / {row.item_id} ({row.stage}): {row.message.splitlines()[0]}')}")
    exports = results.export()
    console.print(f"run directory: {outcome.store.directory}  (exports: {exports})  "
                  f"generated {outcome.generated}, scored {outcome.scored} new")
    return EXIT_PARTIAL if results.any_failed else EXIT_OK


def add_report_parser(sub) -> None:
    parser = sub.add_parser("report", help="print the tables of a stored run again",
                            description="Print the comparison tables of an existing run directory.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--wide", action="store_true",
                        help="one row per model and language with every metric, both interval bounds and the "
                             "speed table (the compact default fits 100 columns)")
    parser.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from mheval.report import make_console, print_results
    from mheval.results import RunResults

    print_results(RunResults.load(args.run_dir), console=make_console(args.wide), wide=args.wide)
    return EXIT_OK


def add_suites_parser(sub) -> None:
    parser = sub.add_parser("suites", help="list the prompt suites, or validate suite files",
                            description="Without arguments, list the suites in prompts/. With paths or names, "
                                        "validate them and print every problem (file, item, field).")
    parser.add_argument("suite", nargs="*")
    parser.set_defaults(handler=cmd_suites)


def cmd_suites(args: argparse.Namespace) -> int:
    from collections import Counter

    from mheval.suites import list_suites, load_suite

    for name in args.suite or list_suites():
        suite = load_suite(name)
        languages = Counter(item.language for item in suite.items)
        print(f"{suite.name}: {len(suite.items)} items ({', '.join(f'{k} {v}' for k, v in languages.items())}) "
              f"— {suite.description}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mheval", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (add_run_parser, add_generate_parser, add_report_parser, add_compare_parser, add_suites_parser,
                add_validate_parser, add_gate_parser, add_baseline_parser, add_dashboard_parser, add_review_parser,
                add_listing_parsers, add_weights_parser):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_INPUT_ERROR
    from mheval.media import MediaError
    from mheval.suites import SuiteError

    try:
        return args.handler(args)
    except (SuiteError, ValueError, FileNotFoundError, MediaError) as err:
        print(f"mheval: error: {err}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print("mheval: interrupted; everything finished so far is stored, run the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
