"""Whisper base decode time per 5-second clip: mheval's decoder vs openai-whisper's own `transcribe`, same model.

    .venv/bin/python benchmarks/bench_asr.py [--clips 4] [--threads 1,2]

Both sides use the same loaded model and the same decoding (beam 5 at temperature 0, best_of 5 on the fallback
temperatures, thresholds, no conditioning on previous text, same decode-length cap); mheval additionally computes the
encoder once per window and keeps the cross-attention cache un-broadcast for the beams (transcripts are compared).
Clips are espeak-ng English sentences padded with silence to exactly 5 s. Prints wall and process CPU seconds per
clip and their ratios, measured in this one run.
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from math import gcd
from pathlib import Path

import numpy as np
import torch
import whisper
from scipy.io import wavfile
from scipy.signal import resample_poly

from mheval.asr import SAMPLE_RATE, load_asr

SENTENCES = [
    "The weather is lovely today, so we are going for a walk in the park by the river.",
    "Please remember to turn off the lights and lock the door when you leave the office.",
    "My brother bought a new car last Saturday, and he drove it all the way to the coast.",
    "Could you please pass me the salt and pepper, and maybe a little more bread as well?",
    "I have been working on this project for three weeks and it is nearly finished now.",
    "We should meet at the train station at nine o'clock, before the crowds arrive there.",
]


def five_second_clip(text: str, directory: Path) -> np.ndarray:
    wav = directory / "clip.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "190", "-w", str(wav), text], check=True)
    rate, samples = wavfile.read(wav)
    g = gcd(SAMPLE_RATE, rate)
    audio = resample_poly(samples.astype(np.float32) / 32768, SAMPLE_RATE // g, rate // g).astype(np.float32)
    return np.pad(audio, (0, max(0, 5 * SAMPLE_RATE - audio.size)))[: 5 * SAMPLE_RATE]


def stock_transcribe(asr, audio: np.ndarray) -> str:
    d = asr.decoding
    return whisper.transcribe(
        asr.model, audio, language="en", fp16=False, verbose=None, temperature=d.temperatures,
        compression_ratio_threshold=d.compression_ratio_threshold, logprob_threshold=d.logprob_threshold,
        no_speech_threshold=d.no_speech_threshold, condition_on_previous_text=False, beam_size=d.beam_size,
        best_of=d.best_of, sample_len=d.sample_len(audio.size / SAMPLE_RATE, asr.model.dims.n_text_ctx),
        without_timestamps=True,
    )["text"].strip()


def timed(fn) -> tuple[float, float, str]:
    wall, cpu = time.perf_counter(), time.process_time()
    text = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()
    asr = load_asr("base")
    with tempfile.TemporaryDirectory() as tmp:
        clips = [five_second_clip(text, Path(tmp)) for text in SENTENCES[: args.clips]]
    asr.transcribe(clips[0], "en")  # warm-up
    print(f"{len(clips)} clips of 5.0 s, Whisper base, beam {asr.decoding.beam_size}, fp32 CPU")
    print("threads  decoder          wall s/clip  CPU s/clip")
    for threads in map(int, args.threads.split(",")):
        torch.set_num_threads(threads)
        stock = [timed(lambda: stock_transcribe(asr, clip)) for clip in clips]
        ours = [timed(lambda: asr.transcribe(clip, "en").text) for clip in clips]
        same = sum(s[2] == o[2] for s, o in zip(stock, ours))
        for name, runs in (("whisper.transcribe", stock), ("mheval ASR", ours)):
            print(f"{threads:7d}  {name:18s} {np.mean([r[0] for r in runs]):10.2f}  {np.mean([r[1] for r in runs]):10.2f}")
        print(f"         speed-up wall {sum(r[0] for r in stock) / sum(r[0] for r in ours):.2f}x, "
              f"CPU {sum(r[1] for r in stock) / sum(r[1] for r in ours):.2f}x; identical transcripts {same}/{len(clips)}")


if __name__ == "__main__":
    main()
