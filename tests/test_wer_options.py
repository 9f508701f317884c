"""Every WER option acts, every other is refused (issue 12 item 6: `wer.beam_size=1` used to change the cache key
but not the decoding). The engine's library is replaced by a recorder, so these tests are fast; test_asr.py runs
the real models."""
from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace

import numpy as np
import pytest

import mheval.asr as asr
from mheval.asr import faster_whisper_engine
from mheval.metrics import create_metric
from mheval.metrics.wer import WerConfig

AUDIO = np.full(16_000 * 2, 0.01, dtype=np.float32)  # 2 s; the recorder never looks at it


class Recorder:
    """Stands in for faster_whisper.WhisperModel and BatchedInferencePipeline: records how mheval calls them and
    answers one window whose no-speech probability and log-probability sit between the thresholds' defaults and
    the values the tests set, so that the silence rule's options visibly change the outcome."""

    calls: list = []
    answer = dict(text=" hello there", tokens=[1, 2, 3], temperature=0.0, avg_logprob=-1.5, compression_ratio=1.0,
                  no_speech_prob=0.7)

    def __init__(self, *args, **kwargs):
        self.calls.append(("load", args, kwargs))
        self.hf_tokenizer = SimpleNamespace(token_to_id=lambda token: None if token == "<|yue|>" else 1)
        self.supported_languages = ["en", "zh", "yue", "ja", "ko", "de", "fr"]

    def transcribe(self, audio, **kwargs):
        self.calls.append(("transcribe", len(audio), kwargs))
        return iter([SimpleNamespace(**self.answer)]), None


class PipelineRecorder(Recorder):
    def __init__(self, model):
        self.calls.append(("pipeline", (), {}))


@pytest.fixture
def recorded(monkeypatch, tmp_path):
    monkeypatch.setattr(faster_whisper_engine, "WhisperModel", Recorder)
    monkeypatch.setattr(faster_whisper_engine, "BatchedInferencePipeline", PipelineRecorder)
    monkeypatch.setattr(faster_whisper_engine, "base_folder", lambda: tmp_path / "base")
    asr.load_asr.cache_clear()

    def run(**options):
        Recorder.calls = []
        metric = create_metric("wer", **options)
        transcript = metric.asr.transcribe(AUDIO, "en")
        return Recorder.calls, transcript.text, transcript.info["windows"], metric.config_hash()

    yield run
    asr.load_asr.cache_clear()


def ctranslate2_folder(path):
    path.mkdir()
    (path / "model.bin").write_bytes(b"another model")
    return str(path)


NON_DEFAULT = {
    "device": "cuda", "compute_type": "float32", "batch_size": 2, "beam_size": 1, "best_of": 2,
    "fallback_on_low_logprob": "yes", "compression_ratio_threshold": "3.0", "logprob_threshold": "-2.0",
    "no_speech_threshold": "0.8", "tokens_per_second": "5",
}


@pytest.mark.parametrize("option", [f.name for f in fields(WerConfig) if f.name not in ("engine",)])
def test_every_option_changes_the_decode_call_or_its_outcome_and_the_cache_key(recorded, option, tmp_path):
    value = ctranslate2_folder(tmp_path / "other") if option == "asr" else NON_DEFAULT[option]
    default_calls, default_text, default_windows, default_key = recorded()
    calls, text, windows, key = recorded(**{option: value})
    assert (calls, text, windows) != (default_calls, default_text, default_windows), option
    assert key != default_key


def test_default_decode_call_is_the_documented_policy(recorded):
    calls, text, windows, _ = recorded()
    (_, _, load), (_, samples, decode) = calls
    assert load == {"device": "cpu", "compute_type": "int8"} and samples == AUDIO.size
    assert decode["language"] == "en" and decode["beam_size"] == 5 and decode["condition_on_previous_text"] is False
    assert decode["without_timestamps"] is True and decode["temperature"][0] == 0.0
    assert decode["max_new_tokens"] == 16 + 30  # min_sample_len + 15 tokens/s × 2 s
    # no-speech 0.7 > 0.6 and log-probability -1.5 < -1: silent
    assert text == "" and windows[0]["silent"] and not windows[0]["cap_hit"]


def test_cap_hit_is_recorded(recorded, monkeypatch):
    _, _, windows, _ = recorded(tokens_per_second="0.001", no_speech_threshold="0.9")  # cap 16 + 1 tokens
    assert windows[0]["cap"] == 17 and not windows[0]["cap_hit"]
    monkeypatch.setattr(Recorder, "answer", {**Recorder.answer, "tokens": list(range(17)), "no_speech_prob": 0.0})
    _, _, windows, _ = recorded(tokens_per_second="0.001")
    assert windows[0]["cap_hit"]


@pytest.mark.parametrize("options, message", [
    ({"beam": "3"}, "unknown option"),
    ({"engine": "whisper.cpp"}, "unknown ASR engine"),
    ({"device": "tpu"}, "unknown ASR device"),
    ({"compute_type": "int4"}, "not available on faster-whisper"),
    ({"engine": "openai-whisper", "compute_type": "int8"}, "not available on openai-whisper"),
    ({"engine": "openai-whisper", "compute_type": "float16"}, "CUDA only"),
    ({"engine": "openai-whisper", "batch_size": "4"}, "batch_size > 1 needs"),
    ({"beam_size": "0"}, "beam_size and best_of"),
    ({"asr": "/nonexistent/model"}, "unknown ASR model"),
])
def test_options_that_would_not_act_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        create_metric("wer", **options).config()


def test_engine_option_loads_the_openai_whisper_engine(monkeypatch):
    """A tiny random-weight Whisper (the real classes) stands in for the converted base, so no checkpoint is read."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    from mheval.asr import openai_whisper_engine

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2, n_audio_layer=1,
                           n_vocab=51865, n_text_ctx=448, n_text_state=16, n_text_head=2, n_text_layer=1)
    model = Whisper(dims)
    with torch.no_grad():  # openai-whisper leaves the decoder's positional table uninitialised (torch.empty)
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02)
    monkeypatch.setattr(openai_whisper_engine, "load_model", lambda name, device: model)
    asr.load_asr.cache_clear()
    try:
        default, other = create_metric("wer"), create_metric("wer", engine="openai-whisper", beam_size="1")
        assert isinstance(other.asr, openai_whisper_engine.OpenAIWhisperASR)
        assert other.asr.identity["engine"] == "openai-whisper" and other.asr.identity["compute_type"] == "float32"
        assert other.asr.identity["converter_version"] >= 1
        assert other.config_hash() != default.config_hash()
        transcript = other.asr.transcribe(AUDIO, "yue")
        assert transcript.language_used == "zh"  # 51,865 tokens: 99 languages, without yue (as Whisper base)
        assert transcript.info["windows"][0]["cap"] == 46
    finally:
        asr.load_asr.cache_clear()


def test_cantonese_falls_back_to_mandarin_where_the_model_lacks_yue(recorded):
    metric = create_metric("wer")
    assert metric.asr.transcribe(AUDIO, "yue").language_used == "zh"


def test_cuda_is_reported_unavailable_without_a_gpu(monkeypatch):
    import ctranslate2

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 0)
    reason = create_metric("wer", device="cuda").unavailable()
    assert reason and "no CUDA device" in reason
    assert create_metric("wer").unavailable() is None
