"""Peak memory of scoring one 1080p clip with sync, BRISQUE and technical, for a 5-second and a 60-second clip.

The clips are made here: the puppet's procedural face drawn at 1920×1080, 25 fps, frame by frame (never the whole
clip in memory), with a synthetic voice (amplitude-modulated tones with pauses) that its mouth follows, so the sync
metric runs its whole pipeline. Each clip is scored in a fresh subprocess, whose peak resident set size
(`ru_maxrss`) is the number reported: the goal is ≤ 2 GB for both, i.e. memory that does not grow with the clip.

    .venv/bin/python benchmarks/bench_memory.py [--seconds 5 60] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mheval.adapters.puppet import draw_face, mouth_openness
from mheval.media import ClipMedia, write_mp4
from mheval.metrics import ClipContext, NotApplicable, create_metric
from mheval.suites import load_suite

WIDTH, HEIGHT, FPS, SAMPLE_RATE = 1920, 1080, 25, 16_000
METRICS = ("sync", "brisque", "technical")


def synthetic_voice(seconds: float, seed: int = 0) -> np.ndarray:
    """Syllable-like bursts (a 150 Hz buzz with harmonics, 4–7 per second) in phrases separated by pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    buzz = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6))
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(4, 7) * t), 0, None) ** 2
    phrases = (np.sin(2 * np.pi * t / 3.0 + 1.0) > -0.3).astype(np.float64)   # ~2 s of speech, ~1 s of pause
    return (0.3 * buzz / 2.3 * syllables * phrases).astype(np.float32)


def make_clip(path: Path, seconds: float) -> None:
    audio = synthetic_voice(seconds)
    count = int(seconds * FPS)
    openness = mouth_openness(audio, SAMPLE_RATE, count)
    background = np.array([70, 90, 110], np.uint8)
    frames = (draw_face(background, WIDTH, HEIGHT, opening, (3 * np.sin(i * 0.07), 2 * np.sin(i * 0.05)), False)
              for i, opening in enumerate(openness))
    write_mp4(path, frames, FPS, audio, SAMPLE_RATE)


def score(path: Path) -> dict:
    """Run in the subprocess: every metric on the clip, then this process's peak RSS."""
    item = load_suite("smoke").items[0]
    context = ClipContext(ClipMedia(path), item, "bench")
    started, results = time.perf_counter(), {}
    for name in METRICS:
        try:
            fields = create_metric(name).score(context)
            results[name] = {key: value for key, value in fields.items() if key in ("offset_ms", "brisque",
                                                                                    "frozen_ratio")}
        except NotApplicable as reason:
            results[name] = f"not applicable: {reason}"
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # kilobytes on Linux
    return {"peak_rss_gb": peak_kb / 1024 ** 2, "seconds": time.perf_counter() - started, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0, 60.0])
    parser.add_argument("--keep", type=Path, default=None, help="make (or reuse) the clips in this directory")
    parser.add_argument("--score", type=Path, default=None, help=argparse.SUPPRESS)   # the subprocess's job
    args = parser.parse_args()
    if args.score is not None:
        print(json.dumps(score(args.score)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        print(f"{'clip':<18} {'peak RSS GB':>11} {'score s':>8}  results")
        for seconds in args.seconds:
            path = directory / f"face_{WIDTH}x{HEIGHT}_{seconds:g}s.mp4"
            if not path.exists():
                make_clip(path, seconds)
            child = subprocess.run([sys.executable, __file__, "--score", str(path)], capture_output=True, text=True)
            if child.returncode != 0:
                raise SystemExit(f"scoring {path} failed:\n{child.stderr}")
            report = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"{f'1080p {seconds:g} s':<18} {report['peak_rss_gb']:>11.2f} {report['seconds']:>8.1f}  "
                  f"{json.dumps(report['results'])}", flush=True)


if __name__ == "__main__":
    main()
