"""`mheval weights`: every metric's pinned hub weights and where they are here; `mheval weights fetch DIR` fills a
folder for an air-gapped machine. Also the `--offline`, `--weights-dir`, `--allow-unpinned` options of `mheval run`
(set as environment variables, so that scoring workers in other processes follow them too)."""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

from mheval.weights import (ALLOW_UNPINNED_ENV, OFFLINE_ENV, WEIGHTS_DIR_ENV, HubWeights, WeightsPolicy,
                            WeightsUnavailable, inspect, resolve)

EXIT_OK = 0
EXIT_PARTIAL = 3   # as `mheval run`: finished, but some weights could not be fetched

DESCRIPTION = """\
The learned metrics whose weights no package ships (CLIP, SyncNet, VideoScore2, Whisper large-v3) name them as a
Hugging Face hub repository, a revision (commit) and files with their sha256. A run fetches them on first use when
the machine is online (into the Hugging Face cache, or --weights-dir), refuses a file whose sha256 differs from
the pin, and reports the metric unavailable (the run goes on) when they cannot be had. Weights whose pins could not
be found are used only with `mheval run --allow-unpinned`. A local path given as a metric option always wins.

Without a subcommand: list every metric's weights and where they are here: the hub weights ("not fetched" when
absent), then the weights that ship in installed packages (Whisper base, dlib's face models, DNSMOS, Resemblyzer,
BRISQUE), with their sha256 as they enter score keys and the manifest.
"""

EPILOG = """\
air-gapped use:
  connected machine:  mheval weights fetch /media/usb/mheval-weights [--allow-unpinned] [--metrics wer,syncnet]
  offline machine:    mheval run --offline --weights-dir /media/usb/mheval-weights ...
                      (or MHEVAL_WEIGHTS_DIR=DIR and HF_HUB_OFFLINE=1 in the environment)
"""


@dataclass(frozen=True)
class DeclaredWeights:
    """One hub declaration with the metrics that read it."""

    weights: HubWeights
    metrics: tuple[str, ...]


def declared_weights(names: list[str] | None = None) -> list[DeclaredWeights]:
    """Every registered metric's `hub_weights` (or those of `names`), each declaration once."""
    from mheval.metrics import metric_class, metric_names

    grouped: dict[HubWeights, list[str]] = {}
    for name in names or metric_names():
        weights = metric_class(name).hub_weights
        if weights is not None:
            grouped.setdefault(weights, []).append(name)
    return [DeclaredWeights(weights, tuple(metrics)) for weights, metrics in grouped.items()]


def weights_rows(policy: WeightsPolicy) -> list[dict]:
    """One JSON-ready row per declaration: the pins, and what the policy's folder holds (no request is made)."""
    rows = []
    for declared in declared_weights():
        weights = declared.weights
        copy = inspect(weights, policy.cache_dir)
        files = [{"path": item.path, "sha256": item.sha256, "size": item.size,
                  "state": ("missing" if item.path in copy.missing else "sha256 differs" if item.path in copy.differing
                            else "ok" if item.sha256 else "present (unpinned)")} for item in weights.files]
        rows.append({"metrics": list(declared.metrics), "repo": weights.repo, "revision": weights.revision,
                     "pinned": weights.pinned, "unpinned": weights.unpinned_parts(), "files": files,
                     "extra_patterns": list(weights.extra_patterns), "licence": weights.licence,
                     "provenance": weights.provenance,
                     "location": str(copy.folder) if copy.complete else None, "cache_dir": str(policy.cache_dir)})
    return rows


def shipped_weights_rows() -> list[dict]:
    """One JSON-ready row per metric whose default configuration reads local files (weights shipped in packages;
    WER's Whisper base beside its hub-pinned large-v3): those files with their sha256 (the ones in its score keys),
    or why it cannot run here. Read offline, so listing never fetches anything."""
    from mheval.metrics import create_metric, metric_class, metric_names

    rows = []
    saved = os.environ.get(OFFLINE_ENV)
    os.environ[OFFLINE_ENV] = "1"
    try:
        for name in metric_names():
            metric = create_metric(name)
            reason = metric.unavailable()
            files = [] if reason else [{"path": item.path, "sha256": item.sha256} for item in metric.weights()]
            if files or (reason and metric_class(name).hub_weights is None):
                rows.append({"metric": name, "files": files, "unavailable": reason})
    finally:
        os.environ.pop(OFFLINE_ENV) if saved is None else os.environ.__setitem__(OFFLINE_ENV, saved)
    return rows


def print_shipped_weights(rows: list[dict]) -> None:
    from rich import box
    from rich.table import Table

    from mheval.report import make_console

    table = Table(title="weights shipped in installed packages", show_lines=True, box=box.SQUARE, padding=(0, 0))
    table.add_column("metric", max_width=18)
    table.add_column("files here: sha256", overflow="fold")
    for row in rows:
        lines = [f"{item['path']}: {item['sha256'][:12]}…" for item in row["files"]]
        table.add_row(row["metric"], "\n".join(lines) or f"unavailable: {row['unavailable']}")
    make_console().print(table)


def _where(row: dict) -> str:
    if row["location"]:
        return row["location"]
    problems = [f"{item['path']}: {item['state']}" for item in row["files"] if item["state"] != "missing"
                and item["state"] != "ok"]
    return "not fetched" + (f" ({'; '.join(problems)})" if problems else "")


def print_weights(rows: list[dict], cache_dir: Path) -> None:
    from rich import box
    from rich.table import Table

    from mheval.report import make_console

    table = Table(title=f"hub weights (folder: {cache_dir})", show_lines=True, box=box.SQUARE, padding=(0, 0))
    longest_repo = max((len(row["repo"]) for row in rows), default=10)
    table.add_column("metrics", overflow="fold", max_width=12)
    table.add_column("repository @ revision, licence; here", overflow="fold", min_width=longest_repo)
    table.add_column("files: sha256, state", overflow="fold")
    for row in rows:
        revision = row["revision"][:12] if row["revision"] else "main (not pinned)"
        files = [f"{item['path']}: {item['sha256'][:12] + '…' if item['sha256'] else 'not pinned'}, {item['state']}"
                 for item in row["files"]] + [f"{pattern}: not pinned" for pattern in row["extra_patterns"]]
        table.add_row(", ".join(row["metrics"]),
                      f"{row['repo']}\n@ {revision}\n{row['licence']}\nhere: {_where(row)}", "\n".join(files))
    console = make_console()
    console.print(table)
    unpinned = [row for row in rows if not row["pinned"]]
    for row in unpinned:
        console.print(f"{', '.join(row['metrics'])}: {'; '.join(row['unpinned'])} ({row['provenance']}); used only "
                      f"with --allow-unpinned")


def cmd_weights(args: argparse.Namespace) -> int:
    policy = _policy(args.weights_dir)
    rows, shipped = weights_rows(policy), shipped_weights_rows()
    if args.json:
        print(json.dumps({"hub": rows, "shipped": shipped}, indent=2))
    else:
        print_weights(rows, policy.cache_dir)
        print_shipped_weights(shipped)
    return EXIT_OK


def cmd_fetch(args: argparse.Namespace) -> int:
    names = [name.strip() for name in args.metrics.split(",") if name.strip()] if args.metrics else None
    policy = WeightsPolicy(weights_dir=args.directory.expanduser(), allow_unpinned=args.allow_unpinned,
                           endpoint=os.environ.get("HF_ENDPOINT") or None)
    failures = 0
    for declared in declared_weights(names):
        try:
            folder = resolve(declared.weights, policy)
        except WeightsUnavailable as error:
            failures += 1
            print(f"{', '.join(declared.metrics)}: not fetched: {error}")
            continue
        print(f"{', '.join(declared.metrics)}: {declared.weights.label} -> {folder}")
    print(f"weights folder: {policy.cache_dir} (use it with: mheval run --offline --weights-dir {policy.cache_dir})")
    return EXIT_PARTIAL if failures else EXIT_OK


def _policy(weights_dir: Path | None) -> WeightsPolicy:
    policy = WeightsPolicy.from_environment()
    if weights_dir is None:
        return policy
    return WeightsPolicy(policy.offline, policy.offline_reason, weights_dir.expanduser(), policy.allow_unpinned,
                         policy.endpoint)


def add_weights_parser(sub) -> None:
    parser = sub.add_parser("weights", help="list the metrics' pinned hub weights; `weights fetch DIR` for "
                                            "air-gapped machines",
                            description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the list as JSON (full sha256, sizes, states)")
    parser.add_argument("--weights-dir", type=Path, default=None, metavar="DIR",
                        help=f"look in this folder instead of the Hugging Face cache (default ${WEIGHTS_DIR_ENV})")
    parser.set_defaults(handler=cmd_weights)
    actions = parser.add_subparsers(dest="weights_action", metavar="ACTION")
    fetch = actions.add_parser("fetch", help="download every metric's weights into DIR (hub cache layout)",
                               description="Download the pinned weights of every metric (or --metrics) into DIR, "
                                           "checking each sha256, so DIR can be copied to an air-gapped machine "
                                           "and used there with `mheval run --offline --weights-dir DIR`. Files "
                                           "already in DIR with their sha256 are not downloaded again.")
    fetch.add_argument("directory", type=Path, metavar="DIR")
    fetch.add_argument("--metrics", default=None, help="comma-separated metric names (default: all)")
    fetch.add_argument("--allow-unpinned", action="store_true",
                       help="also fetch weights without pinned revision/sha256 (VideoScore2), as the hub serves them")
    fetch.set_defaults(handler=cmd_fetch)


def add_weights_arguments(parser: argparse.ArgumentParser) -> None:
    """`mheval run`'s options for hub weights."""
    group = parser.add_argument_group("hub weights (see `mheval weights --help`)")
    group.add_argument("--offline", action="store_true",
                       help="never contact the Hugging Face hub: weights not already here make their metric "
                            "unavailable (also HF_HUB_OFFLINE=1)")
    group.add_argument("--weights-dir", type=Path, default=None, metavar="DIR",
                       help="hub weights folder (hub cache layout, e.g. made by `mheval weights fetch DIR`), used "
                            "instead of the Hugging Face cache; missing files are fetched into it when online")
    group.add_argument("--allow-unpinned", action="store_true",
                       help="use weights whose revision/sha256 are not pinned (VideoScore2) as the hub serves them; "
                            "their sha256 still goes into the score key and manifest")


def apply_weights_arguments(args: argparse.Namespace) -> None:
    """Put `mheval run`'s weight options into the environment, where `WeightsPolicy.from_environment` (in this
    process and in scoring workers) reads them."""
    if args.offline:
        os.environ[OFFLINE_ENV] = "1"
    if args.weights_dir is not None:
        os.environ[WEIGHTS_DIR_ENV] = str(args.weights_dir.expanduser().resolve())
    if args.allow_unpinned:
        os.environ[ALLOW_UNPINNED_ENV] = "1"
