"""Whisper base on puppet clips: engines and compute types compared on accuracy, speed and agreement.

    .venv/bin/python benchmarks/bench_asr.py [--per-language 6] [--languages en,de,fr,zh,ja,ko]
                                             [--configs faster-whisper:int8,faster-whisper:float32,openai-whisper:float32]

The same puppet clips (multilingual suite, made once) are transcribed by each ASR configuration, in one process,
with mheval's decoding policy (beam 5, language forced, repetition-only fallback, length cap): per configuration
the corpus WER/CER per language, and wall / process CPU seconds per clip (model load excluded, after one warm-up
clip). Then the agreement of every configuration with the first openai-whisper one (the cross-check engine):
identical transcripts, and the error rate of one transcript read against the other. This chose the CPU default
compute type (`mheval.asr.DEFAULT_COMPUTE_TYPE`) and records that the two engines agree.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


from mheval.adapters.puppet import PuppetAdapter
from mheval.asr import ASRSettings, load_asr
from mheval.media import read_audio
from mheval.metrics.normalize import ErrorCounts, error_counts
from mheval.runner import select_items
from mheval.suites import load_suite

ZERO = ErrorCounts(0, 0, 0, 0, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-language", type=int, default=6)
    parser.add_argument("--languages", default="en,de,fr,zh,ja,ko")
    parser.add_argument("--configs", default="faster-whisper:int8,faster-whisper:float32,openai-whisper:float32")
    args = parser.parse_args()
    languages = args.languages.split(",")
    items = select_items(load_suite("multilingual"), args.per_language, languages)
    with tempfile.TemporaryDirectory() as tmp:
        audio = {}
        for item in items:
            clip = Path(tmp) / f"{item.id}.mp4"
            PuppetAdapter().generate(item, clip, seed=0)
            audio[item.id] = read_audio(clip)
    print(f"{len(items)} puppet clips ({', '.join(languages)}), Whisper base, beam 5, mheval decoding policy")
    print(f"{'configuration':28s} " + " ".join(f"{lang:>6s}" for lang in languages) + "   wall s/clip  CPU s/clip")
    transcripts: dict[str, dict[str, str]] = {}
    for config in args.configs.split(","):
        engine, compute_type = config.split(":")
        asr = load_asr(ASRSettings(engine=engine, compute_type=compute_type))
        asr.transcribe(audio[items[0].id], items[0].language)  # warm-up
        texts, wall, cpu = {}, 0.0, 0.0
        for item in items:
            started, started_cpu = time.perf_counter(), time.process_time()
            texts[item.id] = asr.transcribe(audio[item.id], item.language).text
            wall, cpu = wall + time.perf_counter() - started, cpu + time.process_time() - started_cpu
        transcripts[config] = texts
        rates = [sum((error_counts(i.reference_text, texts[i.id], i.language) for i in items if i.language == lang),
                     ZERO).rate for lang in languages]
        print(f"{config:28s} " + " ".join(f"{100 * r:6.1f}" for r in rates)
              + f"   {wall / len(items):11.2f}  {cpu / len(items):10.2f}", flush=True)
    reference = next((c for c in transcripts if c.startswith("openai-whisper")), None)
    if reference:
        print(f"agreement with {reference} (same clips): identical transcripts; WER/CER of one read against the other")
        for config, texts in transcripts.items():
            if config == reference:
                continue
            same = sum(texts[i.id] == transcripts[reference][i.id] for i in items)
            between = [sum((error_counts(transcripts[reference][i.id], texts[i.id], i.language)
                            for i in items if i.language == lang), ZERO).rate for lang in languages]
            print(f"{config:28s} identical {same}/{len(items)}; per language "
                  + " ".join(f"{lang} {100 * r:.1f}%" for lang, r in zip(languages, between)))


if __name__ == "__main__":
    main()
