"""Stage times of the tiny random stack (magihuman-tiny-random) generating one clip, T2V, TI2V and A2V (audio-
conditioned, from an espeak-ng sentence as long as the clip), on this machine.

Every stage the real pipeline runs is timed by the pipeline itself (wall clock). The tiny stack has the real
output sizes (frames, resolution, audio length) with tiny network widths, so the table shows where CPU time goes
when widths are not the cost: the full-resolution video decode leads. Prints a markdown table per preset.

    python benchmarks/bench_pipeline.py --presets distill,sr_540p --seconds 2 --width 448 --height 256 [--threads 1]

On a shared, oversubscribed CPU the many small ops of the tiny networks suffer most from thread contention, so
the wall times move a lot between runs; process CPU time is the steadier figure.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model.pipeline import MagiHumanPipeline, round_resolution

PROMPT = ('A young woman with short black hair faces the camera in a quiet office and says, "The report is ready." '
          "Static medium close-up, soft daylight.\n\nDialogue:\n<Young woman, English>: \"The report is ready.\"\n\n"
          "Background Sound:\n<No prominent background sound>")


RUN_ORDER = ("audio encoding", "text encoding", "image encoding", "base denoising", "super-resolution", "video decode",
             "audio decode", "write mp4")   # the pipeline's stages; the totals follow


def reference_image(directory: Path) -> Path:
    path = directory / "reference.png"
    pixels = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)   # the examples' 1280x720
    Image.fromarray(pixels).save(path)
    return path


def reference_speech(directory: Path, seconds: int) -> Path:
    """The dialogue line spoken by espeak-ng, repeated until it lasts `seconds` (the pipeline cuts it there)."""
    path = directory / "speech.wav"
    text = " ".join(["The report is ready."] * (2 * seconds))
    subprocess.run(["espeak-ng", "-v", "en", "-w", str(path), text], check=True)
    return path


def measure(preset: str, args, image: Path, speech: Path, directory: Path) -> dict[str, dict[str, float]]:
    pipe = MagiHumanPipeline.tiny_random(preset, device="cpu")
    columns = {}
    for mode, reference, audio in (("T2V", None, None), ("TI2V", image, None), ("A2V", None, speech)):
        started, cpu_started = time.perf_counter(), time.process_time()
        result = pipe.generate(PROMPT, image=reference, seconds=args.seconds, width=args.width, height=args.height,
                               seed=42, out=directory / f"{preset}_{mode}.mp4", audio=audio)
        columns[mode] = {**result.timings, "total (wall)": time.perf_counter() - started,
                         "total (process CPU time)": time.process_time() - cpu_started}
        frames, height, width, _ = result.frames.shape
        columns[mode]["_shape"] = f"{frames} frames {width}x{height}, {len(result.audio)} audio samples"
    return columns


def table(preset: str, columns: dict[str, dict]) -> str:
    stages = [stage for stage in dict.fromkeys(key for column in columns.values() for key in column)
              if not stage.startswith("_")]
    stages.sort(key=lambda stage: RUN_ORDER.index(stage) if stage in RUN_ORDER else len(RUN_ORDER))
    lines = [f"| {preset} | " + " | ".join(f"{mode} (s)" for mode in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for stage in stages:
        cells = [f"{column[stage]:.2f}" if stage in column else "–" for column in columns.values()]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    lines.append("| output | " + " | ".join(column["_shape"] for column in columns.values()) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="distill,sr_540p")
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--width", type=int, default=448)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = round_resolution(args.width, args.height)
    print(f"magihuman-tiny-random, {args.seconds}-s clip, base {width}x{height}, CPU {platform.processor() or '?'}, "
          f"torch threads {torch.get_num_threads()}, load average before {os.getloadavg()[0]:.1f}\n")
    with tempfile.TemporaryDirectory() as tmp:
        image, speech = reference_image(Path(tmp)), reference_speech(Path(tmp), args.seconds)
        for preset in args.presets.split(","):
            print(table(preset, measure(preset, args, image, speech, Path(tmp))) + "\n")
    print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
