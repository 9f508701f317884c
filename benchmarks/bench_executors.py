"""Local vs Ray executor: wall time of `mheval run` on this machine, and the paper's comparison on 8 GPUs on paper.

Part 1 (measured): for each suite, `mheval run --models puppet` into a fresh run directory with the local executor,
then with `--executor ray` (which starts and stops its own local Ray instance: its start-up is part of the figure),
and Ray's start-up alone (start a local instance, place one actor, stop). Checks both runs stored the same clips.

Part 2 (on paper): the paper's comparison — 3 generators × the 56 multilingual prompts, scored with WER and
VideoScore2 — on one node with 8 GPUs and the Ray executor, from per-clip costs:
  - MagiHuman: the paper's speed table (one H100, per 5-second clip: 256p 2.0 s, 540p 8.0 s, 1080p 38.4 s),
    scaled to the suite's clip lengths;
  - LTX-2.3 and Ovi 1.1: no figure is published in our sources, so they are given as multiples of MagiHuman's;
  - VideoScore2: measured on an H100 with a random-weight Qwen2.5-VL-7B (VideoScore2's architecture), greedy:
    prefill of a 5-s clip at 2 fps (10 frames, 448x252: 720 video tokens) 0.13 s, then 29.9 ms per generated token
    (transformers 5.17, bf16, eager generate); `--judge-tokens` sets how many tokens it writes per clip;
  - WER: Whisper base on CPU, 5.4 s per clip (benchmarks/bench_metrics.py on this machine): it runs on the nodes'
    CPU cores beside the GPUs and is never the bottleneck, so it adds only its last clip to the wall time;
  - model loading once per worker (`--load-seconds`, an assumption: 15-22 B weights from local NVMe).
The Ray estimate assumes the passes pipeline (judging as clips land) and gives each pool (3 generators, the judge)
one GPU and the rest to whichever pool has the most work per GPU; the local figure is one GPU doing it all in turn.

    .venv/bin/python benchmarks/bench_executors.py                  # both parts
    .venv/bin/python benchmarks/bench_executors.py --paper-only
"""
from __future__ import annotations

import argparse
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAPER_SECONDS_PER_5S = {"256p": 2.0, "540p": 8.0, "1080p": 38.4}
JUDGE_PREFILL_SECONDS = 0.13
JUDGE_SECONDS_PER_TOKEN = 0.0299
WER_SECONDS_PER_CLIP = 5.4

RAY_STARTUP = """
import logging, os, time
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
started = time.perf_counter()
import ray
ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
         logging_level=logging.ERROR)
@ray.remote
class Probe:
    def ready(self):
        return os.getpid()
ray.get(Probe.options(num_cpus=1).remote().ready.remote())
placed = time.perf_counter()
ray.shutdown()
print(f"{placed - started:.2f} {time.perf_counter() - placed:.2f}")
"""


def timed_run(suite: str, out: Path, executor: str, metrics: str | None) -> float:
    command = [sys.executable, "-m", "mheval.cli", "run", "--suite", suite, "--models", "puppet", "--out", str(out),
               "--no-progress", "--executor", executor]
    if metrics:
        command += ["--metrics", metrics]
    started = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    if result.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return wall


def clip_hashes(out: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(out / "run.sqlite") as connection:
        return connection.execute("SELECT item_id, sha256 FROM clips ORDER BY item_id").fetchall()


def measured(suites: list[str], metrics: str | None) -> None:
    startup = subprocess.run([sys.executable, "-c", RAY_STARTUP], capture_output=True, text=True, check=True)
    up, down = startup.stdout.split()
    print(f"Ray start-up alone (local instance, {os.cpu_count()} CPUs, one actor placed): {up} s; shutdown {down} s")
    print(f"{'suite':<14}{'clips':>6}{'local s':>10}{'ray s':>10}{'ray/local':>11}  same clips")
    with tempfile.TemporaryDirectory(prefix="bench-executors-") as scratch:
        for suite in suites:
            local_out, ray_out = Path(scratch, f"{suite}-local"), Path(scratch, f"{suite}-ray")
            local = timed_run(suite, local_out, "local", metrics)
            on_ray = timed_run(suite, ray_out, "ray", metrics)
            same = clip_hashes(local_out) == clip_hashes(ray_out)
            print(f"{suite:<14}{len(clip_hashes(local_out)):>6}{local:>10.1f}{on_ray:>10.1f}{on_ray / local:>11.2f}  "
                  f"{'yes' if same else 'NO'}")


def on_paper(args: argparse.Namespace) -> None:
    from mheval.suites import load_suite

    seconds = [max(1, math.ceil(item.seconds)) for item in load_suite("multilingual").items]
    prompts = len(seconds)
    magihuman = sum(PAPER_SECONDS_PER_5S[args.resolution] * s / 5 for s in seconds)  # GPU-s for the suite
    judge_clip = JUDGE_PREFILL_SECONDS + args.judge_tokens * JUDGE_SECONDS_PER_TOKEN
    print(f"\nOn paper: 3 generators x {prompts} prompts (mean {sum(seconds) / prompts:.1f} s), WER + VideoScore2, "
          f"MagiHuman at {args.resolution} ({PAPER_SECONDS_PER_5S[args.resolution]} s per 5 s, paper), VideoScore2 "
          f"{judge_clip:.1f} s/clip ({args.judge_tokens} tokens), model load {args.load_seconds:.0f} s per worker")
    print(f"{'LTX, Ovi vs MagiHuman':<24}{'GPU-h work':>11}{'1 GPU local':>13}{'8 GPUs Ray':>12}{'speed-up':>10}")
    for factor in args.other_factors:
        generation = [magihuman, magihuman * factor, magihuman * factor]
        judging = 3 * prompts * judge_clip
        work = sum(generation) + judging
        local = work + 4 * args.load_seconds + WER_SECONDS_PER_CLIP * 3 * prompts  # one process: all in turn
        # one GPU per pool, each further GPU to the pool with the most work per GPU (--ray-worker NAME.replicas=N)
        pools = generation + [judging]
        gpus = [1] * len(pools)
        for _ in range(args.gpus - len(pools)):
            busiest = max(range(len(pools)), key=lambda i: pools[i] / gpus[i])
            gpus[busiest] += 1
        slowest = max(w / g for w, g in zip(pools, gpus))
        ray_wall = args.load_seconds + max(work / args.gpus, slowest) + judge_clip + WER_SECONDS_PER_CLIP
        print(f"{f'x{factor:g}':<24}{work / 3600:>11.2f}{local / 60:>11.1f} m{ray_wall / 60:>10.1f} m"
              f"{local / ray_wall:>9.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", default="smoke,multilingual")
    parser.add_argument("--metrics", default=None, help="metrics of the measured runs (default: all)")
    parser.add_argument("--paper-only", action="store_true")
    parser.add_argument("--resolution", choices=sorted(PAPER_SECONDS_PER_5S), default="540p")
    parser.add_argument("--other-factors", type=float, nargs="+", default=[1.0, 2.0, 4.0],
                        help="LTX-2.3's and Ovi's per-clip cost as multiples of MagiHuman's (unpublished)")
    parser.add_argument("--judge-tokens", type=int, default=256)
    parser.add_argument("--load-seconds", type=float, default=120.0)
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args()
    if not args.paper_only:
        measured(args.suites.split(","), args.metrics)
    on_paper(args)


if __name__ == "__main__":
    main()
