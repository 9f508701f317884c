"""Real speech for the voice-metric tests: Debian's pocketsphinx-testdata (BSD-2, CMU), 16 kHz mono.

Three different men: the LibriVox reader of "Sense and Sensibility" (five excerpts, 25 s), the speaker of the
`cards` grammar test (five short commands, 10 s) and the speaker of the `goforward`, `numbers` and `something` raw
recordings (10 s). Different sources (an audiobook, two CMU test sets); their speaker embeddings agree (within a
speaker 0.71–0.93, across 0.35–0.72).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mheval.media import ASR_SAMPLE_RATE, read_audio, write_mp4

DATA = Path("/usr/share/pocketsphinx/test/data")
SPEAKERS = {
    "librivox": sorted((DATA / "librivox").glob("*.wav")),
    "cards": sorted((DATA / "cards").glob("*.wav")),
    "raw": [DATA / name for name in ("goforward.raw", "numbers.raw", "something.raw")],
}


def recording(path: Path) -> np.ndarray:
    if path.suffix == ".raw":   # headerless 16-bit little-endian PCM at 16 kHz
        return np.fromfile(path, dtype="<i2").astype(np.float32) / 32768
    return read_audio(path, ASR_SAMPLE_RATE)


def speaker_audio(speaker: str) -> np.ndarray:
    """All of one speaker's recordings, joined in file order (float32, 16 kHz)."""
    files = SPEAKERS[speaker]
    if not files or not all(path.is_file() for path in files):
        pytest.skip("needs Debian's pocketsphinx-testdata (apt-get install pocketsphinx-testdata)")
    return np.concatenate([recording(path) for path in files])


def white_noise(audio: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """Speech plus white noise `snr_db` below its power (over the samples within 50 dB of the peak)."""
    speech = audio[np.abs(audio) > np.abs(audio).max() * 10 ** (-50 / 20)]
    noise = np.random.default_rng(seed).normal(0.0, np.sqrt(np.mean(speech ** 2) / 10 ** (snr_db / 10)), audio.shape)
    return np.clip(audio + noise, -1, 1).astype(np.float32)


def overdriven(audio: np.ndarray, gain_db: float) -> np.ndarray:
    """Peak-normalised, amplified by `gain_db` and hard-clipped at full scale (30 dB: ~2/3 of speech samples clip)."""
    return np.clip(audio / np.abs(audio).max() * 10 ** (gain_db / 20), -1, 1).astype(np.float32)


def clip_with(path: Path, audio: np.ndarray | None, video: bool = True) -> Path:
    """An mp4 (H.264 + AAC) of `audio` at 16 kHz with small grey frames covering it; None: no audio track."""
    seconds = 1.0 if audio is None else len(audio) / ASR_SAMPLE_RATE
    frames = np.full((max(1, round(seconds * 25)), 32, 32, 3), 128, np.uint8) if video else None
    write_mp4(path, frames, 25, audio, ASR_SAMPLE_RATE)
    return path
