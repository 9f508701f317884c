"""WER scoring speed: `mheval run` vs N sequential `whisper` command-line runs, and a repeated run vs the first.

    .venv/bin/python benchmarks/bench_wer.py [--per-language 4] [--languages en,de,fr]

(a) Scores the same N puppet clips (N = languages × per-language) with
    - `mheval run --models clips:DIR --metrics wer` (one process: model loaded once, audio decoded with PyAV), and
    - one `whisper CLIP --model base.pt --language L` process per clip (the openai-whisper command line, same
      converted Whisper base weights; needs the ffmpeg program, which mheval itself does not).
    Both decode with beam search 5 at temperature 0 and best-of-5 sampling on fallback (the CLI's defaults and
    mheval's), so the difference is process start-up, model loading, and mheval's decoding path.
(b) Runs the identical `mheval run` command a second time and prints second / first.
All timings are wall-clock in this one run, on this machine.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mheval.adapters.puppet import PuppetAdapter
from mheval.asr import base_checkpoint_path
from mheval.runner import select_items
from mheval.suites import load_suite

VENV_BIN = Path(sys.executable).parent


def make_clips(directory: Path, languages: list[str], per_language: int) -> list:
    items = select_items(load_suite("multilingual"), per_language, languages)
    for item in items:
        PuppetAdapter().generate(item, directory / f"{item.id}.mp4", seed=0)
    return items


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def mheval_run(clips: Path, out: Path, languages: list[str], per_language: int) -> float:
    return timed([str(VENV_BIN / "mheval"), "run", "--suite", "multilingual", "--models", f"clips:{clips}",
                  "--metrics", "wer", "--languages", ",".join(languages), "--limit", str(per_language),
                  "--out", str(out), "--no-progress"])


def whisper_cli_runs(clips: Path, items: list, checkpoint: Path, out: Path) -> float:
    total = 0.0
    for item in items:
        language = "zh" if item.language == "yue" else item.language
        total += timed([str(VENV_BIN / "whisper"), str(clips / f"{item.id}.mp4"), "--model", str(checkpoint),
                        "--language", language, "--device", "cpu", "--fp16", "False", "--output_dir", str(out),
                        "--output_format", "txt"])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-language", type=int, default=4)
    parser.add_argument("--languages", default="en,de,fr")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("the whisper command line needs the ffmpeg program: apt-get install ffmpeg")
    languages = args.languages.split(",")
    checkpoint = base_checkpoint_path()
    with tempfile.TemporaryDirectory() as tmp:
        clips = Path(tmp) / "clips"
        clips.mkdir()
        items = make_clips(clips, languages, args.per_language)
        print(f"{len(items)} puppet clips ({', '.join(languages)}), Whisper base ({checkpoint.name}), "
              f"beam 5 / best-of 5 fallback in both")
        cli = whisper_cli_runs(clips, items, checkpoint, Path(tmp) / "cli")
        first = mheval_run(clips, Path(tmp) / "run", languages, args.per_language)
        print(f"(a) {len(items)} sequential whisper CLI runs: {cli:.1f} s   mheval run: {first:.1f} s   "
              f"speed-up {cli / first:.2f}x (target >= 4x)")
        second = mheval_run(clips, Path(tmp) / "run", languages, args.per_language)
        print(f"(b) identical second mheval run: {second:.2f} s = {100 * second / first:.1f}% of the first "
              f"(target <= 5%)")


if __name__ == "__main__":
    main()
