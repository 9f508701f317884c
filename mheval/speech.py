"""Where the speech is in 16 kHz audio: Silero VAD, the ONNX model that ships inside faster-whisper (as the ASR's
windowing uses it), so "is there speech, and where" has one answer for every voice metric.

Silero was chosen over an energy threshold because it separates speech from noise, music and tones: white noise,
a sine tone and silence have no speech; speech at 0 dB SNR, overdriven by 40 dB or 40 dB too quiet is still found
(LibriVox reading from pocketsphinx-testdata, 4.4–4.8 s of its 5 s).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mheval.media import ASR_SAMPLE_RATE

# Chunks tighter than faster-whisper's transcription defaults (2 s of silence merged, 400 ms padding): the voice
# metrics want the speech itself, a pause of 0.3 s separates two utterances, and a blip under 0.25 s is not speech.
VAD_THRESHOLD = 0.5
MIN_SPEECH_MS = 250
MIN_SILENCE_MS = 300
SPEECH_PAD_MS = 100


def vad_model_path() -> Path:
    """The Silero VAD weights the speech segments depend on (part of every voice metric's score key)."""
    from faster_whisper.utils import get_assets_path

    return Path(get_assets_path()) / "silero_vad_v6.onnx"


@dataclass(frozen=True)
class Speech:
    """The speech of one mono 16 kHz signal: `segments` are (start, end) sample ranges in time order."""

    audio: np.ndarray
    segments: tuple[tuple[int, int], ...]

    @property
    def seconds(self) -> float:
        return sum(end - start for start, end in self.segments) / ASR_SAMPLE_RATE

    def samples(self) -> np.ndarray:
        """The speech segments joined in time order, pauses between them left out."""
        if not self.segments:
            return self.audio[:0]
        return np.concatenate([self.audio[start:end] for start, end in self.segments])

    def halves(self) -> tuple[np.ndarray, np.ndarray]:
        """The first and the second half of the speech (by speech time, pauses left out)."""
        joined = self.samples()
        middle = len(joined) // 2
        return joined[:middle], joined[middle:]

    def spans_seconds(self) -> list[list[float]]:
        """The segments as [start, end] seconds from the first sample, for a score's detail."""
        return [[round(start / ASR_SAMPLE_RATE, 3), round(end / ASR_SAMPLE_RATE, 3)] for start, end in self.segments]


def find_speech(audio: np.ndarray) -> Speech:
    """The speech segments of mono float32 audio at 16 kHz (`ClipMedia.audio_16k`, `mheval.media.read_audio`)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    audio = np.asarray(audio, dtype=np.float32)
    options = VadOptions(threshold=VAD_THRESHOLD, min_speech_duration_ms=MIN_SPEECH_MS,
                         min_silence_duration_ms=MIN_SILENCE_MS, speech_pad_ms=SPEECH_PAD_MS)
    chunks = get_speech_timestamps(audio, options, ASR_SAMPLE_RATE) if audio.size else []
    return Speech(audio, tuple((int(chunk["start"]), min(int(chunk["end"]), audio.size)) for chunk in chunks))
