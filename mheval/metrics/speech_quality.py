"""`speech_quality`: DNSMOS P.835, a learned predictor of how listeners rate speech, on the clip's audio track.

Microsoft's DNSMOS (Reddy et al., ICASSP 2022) as the `speechmos` package ships it (MIT, ONNX files inside the
wheel, run with onnxruntime on the CPU): a network on the 16 kHz waveform predicts the three ITU-T P.835 ratings —
`sig` (the speech signal itself: distortion, coloration), `bak` (how intrusive the background is: noise, hum) and
`ovrl` (overall, the headline) — and a second network on its mel spectrogram the P.808 overall rating (`p808`). All
are mean-opinion-score-like, 1 (bad) to 5 (excellent), higher is better. The audio is scored in 9-second windows
one second apart (a shorter clip is repeated to 9 s, as DNSMOS does), and the windows are averaged.

The whole audio track is scored, pauses included: `bak` rates the background that the pauses expose. It is scored
only when it has speech (`mheval.speech`, Silero VAD): at least `min_speech_seconds`, else not applicable, as
without an audio track. Measured on 5-s LibriVox readings in mp4 clips (tests/test_speech_quality.py): `ovrl`
clean 3.0–3.1, white noise at 20 dB SNR 2.5–2.8, at 5 dB 1.9–2.0, overdriven by 30 dB and hard-clipped 1.8–1.9.
DNSMOS is not a clipping detector: heavy noise and heavy clipping both sit near its floor and do not order.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mheval.media import ASR_SAMPLE_RATE
from mheval.metrics import ClipContext, Metric, NotApplicable, register
from mheval.speech import find_speech, vad_model_path

P808_MODEL = ("dnsmos_models", "model_v8.onnx")
P835_MODELS = {False: ("dnsmos_models", "sig_bak_ovr.onnx"), True: ("pdnsmos_models", "sig_bak_ovr.onnx")}


def speechmos_directory() -> Path | None:
    """Where the speechmos package (and the ONNX files inside it) is installed, without importing it."""
    spec = importlib.util.find_spec("speechmos")
    return Path(spec.origin).parent if spec and spec.origin else None


@dataclass(frozen=True)
class SpeechQualityOptions:
    """`--metric-option speech_quality.KEY=VALUE`."""

    personalized: bool = field(default=False, metadata={
        "help": "use personalized DNSMOS, which also rates an interfering talker as background (pDNSMOS)"})
    min_speech_seconds: float = field(default=0.5, metadata={
        "help": "voice activity (Silero VAD) the clip needs to be scored, else not applicable"})


@dataclass(frozen=True)
class SpeechQualityDetail:
    """What was scored: the audio's length, the speech found in it (seconds from the audio's first sample)."""

    audio_seconds: float = 0.0
    speech_segments: list[list[float]] = field(default_factory=list)
    model: str = ""


@register
class SpeechQuality(Metric):
    name = "speech_quality"
    version = "1"
    inputs = ("audio",)
    fields = ("ovrl", "sig", "bak", "p808", "speech_seconds")
    headline = "ovrl"
    unit = "MOS"
    detail_class = SpeechQualityDetail
    description = ("DNSMOS P.835 (speechmos ONNX): overall / signal / background MOS 1–5 of the audio track, and "
                   "P.808 MOS; not applicable without speech")
    options_class = SpeechQualityOptions

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._dnsmos = None

    def model_paths(self) -> tuple[Path, Path] | None:
        """The P.835 and P.808 ONNX files, or None without speechmos."""
        directory = speechmos_directory()
        if directory is None:
            return None
        return directory.joinpath(*P835_MODELS[self.options.personalized]), directory.joinpath(*P808_MODEL)

    def weight_paths(self) -> list[Path]:
        models = self.model_paths()
        return [*models, vad_model_path()] if models else []

    def unavailable(self) -> str | None:
        models = self.model_paths()
        if models is None:
            return "speechmos is not installed (pip install speechmos==0.0.1.1 onnxruntime librosa)"
        missing = [str(path) for path in models if not path.is_file()]
        return f"DNSMOS model files missing: {', '.join(missing)}" if missing else None

    @property
    def dnsmos(self):
        if self._dnsmos is None:
            from speechmos.dnsmos import DNSMOS

            # the class, not speechmos.dnsmos.run: run keeps one model in a module global and takes no file choice
            self._dnsmos = DNSMOS(*map(str, self.model_paths()))
        return self._dnsmos

    def score(self, clip: ClipContext) -> dict[str, Any]:
        clip.media.require(audio=True)
        audio = clip.media.audio_16k
        speech = find_speech(audio)
        if speech.seconds < self.options.min_speech_seconds:
            raise NotApplicable(f"no speech ({speech.seconds:.2f} s of voice activity, below min_speech_seconds "
                                f"{self.options.min_speech_seconds:g})")
        # decoded AAC overshoots ±1 slightly where the source was clipped, and DNSMOS refuses samples outside ±1
        ratings = self.dnsmos(np.clip(audio, -1.0, 1.0), ASR_SAMPLE_RATE, self.options.personalized)
        return {
            "ovrl": float(ratings["ovrl_mos"]),
            "sig": float(ratings["sig_mos"]),
            "bak": float(ratings["bak_mos"]),
            "p808": float(ratings["p808_mos"]),
            "speech_seconds": speech.seconds,
            "detail": {"audio_seconds": len(audio) / ASR_SAMPLE_RATE, "speech_segments": speech.spans_seconds(),
                       "model": "pDNSMOS P.835" if self.options.personalized else "DNSMOS P.835"},
        }
