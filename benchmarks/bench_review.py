"""Human-review study speed: concurrent vote writes, and the full report on a study the size of the paper's.

    .venv/bin/python benchmarks/bench_review.py [--processes 8] [--votes 250] [--raters 12]

(a) P processes each submit N trials (one criterion) through `StudyStore.submit_votes`, the app's own write path,
    into one study database (SQLite WAL); prints votes per second and checks that exactly P × N were stored.
(b) A study of the multilingual suite (56 prompts, 7 languages) with 3 models (168 real pairs; tiny clips from the
    test fixtures, so that the clips cost nothing), answered by R simulated raters who see every pair (R × 168
    trials × 4 criteria, plus catch trials and repeats); prints the wall time of `build_report` with its defaults
    (Davidson: 1,000 bootstrap resamples; Arena: 100) — what `mheval review report` and the dashboard page compute.
(c) Adaptive vs balanced pairing: the votes each design needs for the same certainty. Simulated raters judge
    3 models of known Bradley–Terry strengths (`--strengths`; default 1.0 / 0.8 / 0.25: win shares 0.56, 0.80 and
    0.76, so one matchup is close) on the `overall` criterion, with no ties, catch trials or repeats, through
    `next_trial` and `submit_votes` (the app's own queue and write path). After every vote, the widest 95% Wilson
    interval of a matchup's win share — the quantity the adaptive rule spends votes on — is recorded; for each
    target width, the votes until every matchup is that narrow, median over `--seeds` studies per design, and the
    ratio balanced / adaptive (the votes balanced pairing needs per vote of adaptive pairing).
"""
from __future__ import annotations

import argparse
import itertools
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))   # the test fixtures' tiny run and raters

from mheval.review.report import build_report  # noqa: E402
from mheval.review.storage import StudyStore  # noqa: E402
from mheval.review.stats import wilson  # noqa: E402
from mheval.review.study import StudyConfig, create_study, next_trial  # noqa: E402
from review_fixtures import MODELS, simulate, tiny_run  # noqa: E402

LANGUAGES = ("zh", "yue", "en", "ja", "ko", "de", "fr")


def _writer(study: str, rater_id: int, trials: list[str], queue) -> None:
    store = StudyStore(study)
    queue.put(sum(store.submit_votes(rater_id, trial, {"overall": "left"}) for trial in trials))


def bench_writes(base: Path, processes: int, votes: int) -> None:
    run_dir = tiny_run(base / "writes", languages=("en",), per_language=1)
    store = create_study(run_dir, StudyConfig(models=MODELS, dwell_factor=0.0, criteria=("overall",)),
                         base / "writes-study", progress=False)
    pair = store.pairs().iloc[0]
    work = []
    for index in range(processes):
        rater = store.authenticate(store.invite(f"writer{index}", [])).rater_id
        store.add_trials(rater, [{"slot": "real", "pair_id": int(pair.pair_id), "left_clip": pair.clip_a,
                                  "right_clip": pair.clip_b}] * votes)
        trials = [t.trial_id for t in store.rater_trials(rater)]
        for trial in trials:
            store.mark_served(trial)
        work.append((rater, trials))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_writer, args=(str(store.directory), rater, trials, queue))
               for rater, trials in work]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - start
    written = sum(queue.get() for _ in workers)
    print(f"(a) {processes} processes × {votes} votes: {written} written, {store.vote_count()} stored, "
          f"{seconds:.2f} s, {written / seconds:.0f} votes/s")


def bench_report(base: Path, raters: int) -> None:
    run_dir = tiny_run(base / "report", languages=LANGUAGES, per_language=8, seconds=0.4)
    store = create_study(run_dir, StudyConfig(models=MODELS, dwell_factor=0.0), base / "report-study",
                         progress=False)
    rng = np.random.default_rng(0)
    for index in range(raters):
        simulate(store, store.authenticate(store.invite(f"rater{index}", [])).rater_id,
                 "random" if index % 4 == 3 else "consistent", rng)
    start = time.perf_counter()
    report = build_report(store)
    seconds = time.perf_counter() - start
    print(f"(b) report on {store.vote_count()} votes ({report.protocol['votes']['real']} on real pairs, "
          f"{raters} raters, {len(store.settings()['criteria'])} criteria, 3 models): {seconds:.1f} s")


def widest_interval_after_each_vote(store: StudyStore, strengths: dict[str, float], votes: int,
                                    rng: np.random.Generator) -> np.ndarray:
    """Raters (each judging every pair of the study once, in the order the study serves them) vote until `votes`;
    returns the widest matchup's Wilson interval width after each vote (1.0 while a matchup has no vote)."""
    clips = store.clips().set_index("clip_id")
    tallies = {matchup: [0, 0] for matchup in itertools.combinations(sorted(strengths), 2)}  # [first won, votes]
    widths = []
    raters = 0
    while len(widths) < votes:
        rater = store.authenticate(store.invite(f"sim{raters}", [])).rater_id
        raters += 1
        while len(widths) < votes and (trial := next_trial(store, rater)) is not None:
            row = store.trial(trial.trial_id)
            left, right = clips.model[row.left_clip], clips.model[row.right_clip]
            left_won = rng.random() < strengths[left] / (strengths[left] + strengths[right])
            store.submit_votes(rater, trial.trial_id, {"overall": "left" if left_won else "right"})
            first, second = sorted((left, right))
            tally = tallies[(first, second)]
            tally[0] += (left if left_won else right) == first
            tally[1] += 1
            widths.append(max(interval_width(*tally) for tally in tallies.values()))
    return np.array(widths)


def interval_width(successes: int, n: int) -> float:
    low, high = wilson(successes, n)
    return high - low if n else 1.0


def votes_to_reach(widths: np.ndarray, target: float) -> float:
    """Votes after which the widest interval is at most `target` and stays so to the end (NaN: never)."""
    above = np.flatnonzero(widths > target)
    if not len(above):
        return 1.0
    return np.nan if above[-1] == len(widths) - 1 else float(above[-1] + 2)


def bench_pairing(base: Path, strengths: list[float], votes: int, seeds: int, targets: list[float]) -> None:
    run_dir = tiny_run(base / "pairing", languages=("en", "de", "fr"), per_language=8, seconds=0.4)
    strength = dict(zip(MODELS, strengths))
    needed: dict[str, list[list[float]]] = {"balanced": [], "adaptive": []}
    for seed in range(seeds):
        for design in needed:
            config = StudyConfig(models=MODELS, criteria=("overall",), seed=seed, catch_rate=0.0, repeat_rate=0.0,
                                 adaptive=design == "adaptive", dwell_factor=0.0)
            store = create_study(run_dir, config, base / f"pairing-{design}-{seed}", progress=False)
            widths = widest_interval_after_each_vote(store, strength, votes, np.random.default_rng([seed, 7]))
            needed[design].append([votes_to_reach(widths, target) for target in targets])
    shares = ", ".join(f"{a} vs {b} {strength[a] / (strength[a] + strength[b]):.2f}"
                       for a, b in itertools.combinations(MODELS, 2))
    print(f"(c) pairing, {seeds} studies per design, up to {votes} votes each; true win shares: {shares}")
    print(f"    {'widest 95% interval':>20} {'balanced votes':>15} {'adaptive votes':>15} {'balanced/adaptive':>18}")
    for index, target in enumerate(targets):
        balanced, adaptive = (np.nanmedian([row[index] for row in needed[d]]) for d in ("balanced", "adaptive"))
        reached = min(sum(not np.isnan(row[index]) for row in needed[d]) for d in needed)
        note = "" if reached == seeds else f"  (reached in {reached}/{seeds} studies)"
        print(f"    {target:>20.2f} {balanced:>15.0f} {adaptive:>15.0f} {balanced / adaptive:>18.2f}{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--votes", type=int, default=250)
    parser.add_argument("--raters", type=int, default=12)
    parser.add_argument("--strengths", type=float, nargs=3, default=[1.0, 0.8, 0.25],
                        help="(c) Bradley–Terry strengths of the three simulated models")
    parser.add_argument("--pairing-votes", type=int, default=900, help="(c) votes per simulated study")
    parser.add_argument("--seeds", type=int, default=5, help="(c) studies per design")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.30, 0.25, 0.20],
                        help="(c) widths of the widest matchup's 95%% interval to reach")
    parser.add_argument("--parts", default="abc", help="which parts to run, e.g. c")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mheval-bench-review-") as directory:
        if "a" in args.parts:
            bench_writes(Path(directory), args.processes, args.votes)
        if "b" in args.parts:
            bench_report(Path(directory), args.raters)
        if "c" in args.parts:
            bench_pairing(Path(directory), args.strengths, args.pairing_votes, args.seeds, args.targets)


if __name__ == "__main__":
    main()
