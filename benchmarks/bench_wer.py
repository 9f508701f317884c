"""WER scoring cost: `mheval run --metrics wer` vs plain faster-whisper on the same clips; a repeated run.

    .venv/bin/python benchmarks/bench_wer.py [--per-language 4] [--languages en,de,fr] [--repeats 3]

(a) The same N puppet clips (N = languages × per-language, made once with the puppet adapter) are scored by
    - `python -m mheval.cli run --models clips:DIR --metrics wer` (fresh run directory each time, so every clip is
      decoded, scored and stored, and the report printed), and
    - a plain faster-whisper script (this file with `--plain`): `WhisperModel(folder, compute_type="int8")`, each
      clip read with `faster_whisper.decode_audio` and transcribed with the same beam (5), the language forced and
      mheval's decoding settings, nothing else.
    Each side is its own process, model load and imports included, alternating (mheval, plain, plain, mheval, …).
    Reported: median wall time, CPU time and peak RSS (the process's own rusage, from wait4) of each side, and
    their ratios (targets: wall ≤ 1.2, memory ≤ 1.5), plus how many transcripts are identical (faster-whisper's
    `decode_audio` resamples to 16-bit integers, mheval to float32, so unclear speech may read differently).
(b) The identical `mheval run` command a second time on a finished run directory: second / first.
All figures come from this one run, on this machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLIP_SUFFIX = ".mp4"


def plain_faster_whisper(folder: str, clips: Path, plan: dict, out: Path) -> None:
    """The plain faster-whisper side: what a user would write, with mheval's decoding settings (`plan`, written by
    the parent from mheval's own `DecodingConfig`, so this process imports nothing of mheval)."""
    from faster_whisper import WhisperModel, decode_audio

    model = WhisperModel(folder, device="cpu", compute_type="int8")
    decoding = plan["decoding"]
    transcripts = {}
    for item_id, language in plan["languages"].items():
        audio = decode_audio(str(clips / f"{item_id}{CLIP_SUFFIX}"), sampling_rate=16_000)
        segments, _ = model.transcribe(
            audio, language="zh" if language == "yue" else language, beam_size=decoding["beam_size"],
            best_of=decoding["best_of"], temperature=decoding["temperatures"],
            compression_ratio_threshold=decoding["compression_ratio_threshold"], log_prob_threshold=None,
            no_speech_threshold=None, condition_on_previous_text=False, without_timestamps=True,
            max_new_tokens=plan["caps"][item_id])
        transcripts[item_id] = " ".join(s.text.strip() for s in segments)
    out.write_text(json.dumps(transcripts, ensure_ascii=False))


def measured(command: list[str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (GB) and CPU seconds (user + system, steadier than wall on a loaded machine) of one
    child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0, 3):
        raise SystemExit(f"{command[:4]} failed: {process.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024 ** 2, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-language", type=int, default=4)
    parser.add_argument("--languages", default="en,de,fr")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side (alternating)")
    parser.add_argument("--plain", nargs=4, metavar=("FOLDER", "CLIPS", "PLAN_JSON", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        folder, clips, plan, out = args.plain
        return plain_faster_whisper(folder, Path(clips), json.loads(Path(plan).read_text()), Path(out))

    from mheval.adapters.puppet import PuppetAdapter
    from mheval.asr import SAMPLE_RATE, DecodingConfig
    from mheval.asr.weights import base_folder
    from mheval.media import read_audio
    from mheval.runner import select_items
    from mheval.suites import load_suite

    languages = args.languages.split(",")
    folder = str(base_folder())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = tmp / "clips"
        clips.mkdir()
        items = select_items(load_suite("multilingual"), args.per_language, languages)
        for item in items:
            PuppetAdapter().generate(item, clips / f"{item.id}{CLIP_SUFFIX}", seed=0)
        decoding = DecodingConfig()
        (tmp / "plan.json").write_text(json.dumps({
            "languages": {item.id: item.language for item in items},
            "caps": {item.id: decoding.sample_len(len(read_audio(clips / f"{item.id}{CLIP_SUFFIX}")) / SAMPLE_RATE)
                     for item in items},
            "decoding": {name: getattr(decoding, name)
                         for name in ("beam_size", "best_of", "temperatures", "compression_ratio_threshold")}}))
        print(f"{len(items)} puppet clips ({', '.join(languages)}); Whisper base, faster-whisper int8, beam 5, "
              f"{args.repeats} runs per side, alternating")

        def mheval_command(out: Path) -> list[str]:
            return [sys.executable, "-m", "mheval.cli", "run", "--suite", "multilingual", "--models",
                    f"clips:{clips}", "--metrics", "wer", "--languages", ",".join(languages), "--limit",
                    str(args.per_language), "--out", str(out), "--no-progress"]

        plain_command = [sys.executable, __file__, "--plain", folder, str(clips), str(tmp / "plan.json"),
                         str(tmp / "plain.json")]
        runs: dict[str, list[tuple[float, float, float]]] = {"mheval": [], "plain": []}
        for index in range(args.repeats):
            order = ("mheval", "plain") if index % 2 == 0 else ("plain", "mheval")
            for side in order:
                command = mheval_command(tmp / f"run{index}") if side == "mheval" else plain_command
                runs[side].append(measured(command))
                seconds, gigabytes, cpu_seconds = runs[side][-1]
                print(f"  {side:6s} wall {seconds:6.1f} s  CPU {cpu_seconds:6.1f} s  peak RSS {gigabytes:.2f} GB",
                      flush=True)
        wall, memory, cpu = ({side: statistics.median(run[index] for run in values) for side, values in runs.items()}
                             for index in range(3))
        print(f"(a) median wall: mheval {wall['mheval']:.1f} s, plain faster-whisper {wall['plain']:.1f} s, "
              f"ratio {wall['mheval'] / wall['plain']:.2f} (target <= 1.2)")
        print(f"    median CPU time: mheval {cpu['mheval']:.1f} s, plain {cpu['plain']:.1f} s, "
              f"ratio {cpu['mheval'] / cpu['plain']:.2f}")
        print(f"    median peak RSS: mheval {memory['mheval']:.2f} GB, plain {memory['plain']:.2f} GB, "
              f"ratio {memory['mheval'] / memory['plain']:.2f} (target <= 1.5)")

        results = json.loads((tmp / "run0" / "exports" / "results.json").read_text())
        ours = {clip["item_id"]: json.loads(clip["wer.detail"])["transcript"] for clip in results["clips"]}
        plain = json.loads((tmp / "plain.json").read_text())
        same = sum(ours.get(item_id) == text for item_id, text in plain.items())
        print(f"    identical transcripts: {same}/{len(plain)}")

        second, _, _ = measured(mheval_command(tmp / "run0"))
        print(f"(b) identical second mheval run: {second:.2f} s = {100 * second / wall['mheval']:.1f}% of the "
              f"median first run (target <= 5%)")


if __name__ == "__main__":
    main()
