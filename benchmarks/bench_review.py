"""Human-review study speed: concurrent vote writes, and the full report on a study the size of the paper's.

    .venv/bin/python benchmarks/bench_review.py [--processes 8] [--votes 250] [--raters 12]

(a) P processes each submit N trials (one criterion) through `StudyStore.submit_votes`, the app's own write path,
    into one study database (SQLite WAL); prints votes per second and checks that exactly P × N were stored.
(b) A study of the multilingual suite (56 prompts, 7 languages) with 3 models (168 real pairs; tiny clips from the
    test fixtures, so that the clips cost nothing), answered by R simulated raters who see every pair (R × 168
    trials × 4 criteria, plus catch trials and repeats); prints the wall time of `build_report` with its defaults
    (Davidson: 1,000 bootstrap resamples; Arena: 100) — what `mheval review report` and the dashboard page compute.
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))   # the test fixtures' tiny run and raters

from mheval.review.report import build_report  # noqa: E402
from mheval.review.storage import StudyStore  # noqa: E402
from mheval.review.study import StudyConfig, create_study  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--votes", type=int, default=250)
    parser.add_argument("--raters", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mheval-bench-review-") as directory:
        bench_writes(Path(directory), args.processes, args.votes)
        bench_report(Path(directory), args.raters)


if __name__ == "__main__":
    main()
