"""Real Whisper base (the PyPI CTranslate2 packages) on speech synthesised here with espeak-ng, on both engines."""
import subprocess
import sys
from math import gcd

import numpy as np
import pytest
import torch
from scipy.io import wavfile
from scipy.signal import resample_poly

from mheval import asr
from mheval.asr import ASRSettings, ct2_convert, weights
from mheval.metrics.normalize import ErrorCounts, error_counts

pytestmark = pytest.mark.slow

ENGLISH = [
    "The weather is lovely today, so we are going for a walk in the park.",
    "Could you please pass me the salt and pepper?",
    "I have been working on this project for three weeks.",
    "My brother bought a new car last Saturday.",
    "Please remember to turn off the lights when you leave the office.",
    "We should meet at the train station at nine o'clock.",
]
GERMAN = [
    "Das Wetter ist heute schön, deshalb gehen wir im Park spazieren.",
    "Kannst du mir bitte das Salz reichen?",
    "Ich arbeite seit drei Wochen an diesem Projekt.",
    "Mein Bruder hat letzten Samstag ein neues Auto gekauft.",
    "Bitte denk daran, das Licht auszuschalten, wenn du das Büro verlässt.",
    "Wir treffen uns um neun Uhr am Bahnhof.",
]
# Bounds on corpus WER. Measured on these sentences (espeak-ng 1.51, Whisper base, beam 5, 2-core CPU):
# faster-whisper int8 English 0.031, German 0.41; openai-whisper float32 English 0.031, German 0.44. Margins
# absorb a few words flipping on another CPU; a wrong model, language token or conversion scores ≈ 1.
WER_BOUNDS = {"en": 0.15, "de": 0.60}
OPENAI = ASRSettings(engine="openai-whisper")


def speak(text: str, voice: str, tmp_path) -> np.ndarray:
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True)
    rate, samples = wavfile.read(wav)
    g = gcd(asr.SAMPLE_RATE, rate)
    return resample_poly(samples.astype(np.float32) / 32768, asr.SAMPLE_RATE // g, rate // g).astype(np.float32)


def corpus(sentences, transcripts, language) -> ErrorCounts:
    return sum((error_counts(s, t.text, language) for s, t in zip(sentences, transcripts)), ErrorCounts(0, 0, 0, 0, 0))


@pytest.fixture(scope="module")
def base():
    return asr.load_asr(ASRSettings())


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("speech")
    return {"en": [speak(s, "en-us", tmp) for s in ENGLISH], "de": [speak(s, "de", tmp) for s in GERMAN]}


@pytest.mark.parametrize("language, sentences", [("en", ENGLISH), ("de", GERMAN)])
def test_transcribes_espeak_speech(base, speech, language, sentences):
    transcripts = [base.transcribe(audio, language) for audio in speech[language]]
    assert {t.language_used for t in transcripts} == {language}
    assert corpus(sentences, transcripts, language).rate < WER_BOUNDS[language], [t.text for t in transcripts]
    assert not any(t.info["cap_hit"] for t in transcripts)


def test_engines_agree_on_the_same_weights(base, speech):
    """The openai-whisper engine on the converted base (float32) reads the English sentences much as faster-whisper
    (int8) does: the two transcripts differ by at most 10% of words over the six sentences (measured: one word,
    "Could" / "Can", 1/58)."""
    reference = asr.load_asr(OPENAI)
    pairs = [(base.transcribe(audio, "en").text, reference.transcribe(audio, "en").text) for audio in speech["en"]]
    between = sum((error_counts(theirs, ours, "en") for ours, theirs in pairs), ErrorCounts(0, 0, 0, 0, 0))
    assert between.rate <= 0.10, pairs


def test_long_clip_is_windowed_in_pauses(base, speech):
    """A 45-s clip (the six English sentences twice, 1.5-s pauses) is decoded in windows of at most 30 s whose
    edges lie in pauses (between sentences or at a comma), so no word is cut and every sentence is read."""
    pause = np.zeros(int(1.5 * asr.SAMPLE_RATE), np.float32)
    clip = np.concatenate([piece for audio in speech["en"] * 2 for piece in (pause, audio)] + [pause])
    transcript = base.transcribe(clip, "en")
    windows = transcript.info["windows"]
    assert len(windows) >= 2 and clip.size / asr.SAMPLE_RATE > 30
    quiet = 0.01 * np.abs(clip).max()
    for window in windows:
        assert window["end_seconds"] - window["start_seconds"] <= 30
        for edge in (window["start_seconds"], window["end_seconds"]):
            around = clip[max(0, int((edge - 0.02) * asr.SAMPLE_RATE)): int((edge + 0.02) * asr.SAMPLE_RATE)]
            assert np.abs(around).mean() < quiet, f"window edge at {edge:.2f} s is inside speech"
    assert error_counts(" ".join(ENGLISH * 2), transcript.text, "en").rate < WER_BOUNDS["en"], transcript.text


def test_batched_pipeline_reads_as_the_sequential_one(base, speech):
    """The GPU path (faster-whisper's batched pipeline over the windows, then the fallback for repetitive ones),
    run on the CPU: same windows, and the text differs from the sequential decode by at most 5 % of words."""
    pause = np.zeros(int(1.5 * asr.SAMPLE_RATE), np.float32)
    clip = np.concatenate([piece for audio in speech["en"] * 2 for piece in (pause, audio)] + [pause])
    batched = asr.load_asr(ASRSettings(batch_size=4)).transcribe(clip, "en")
    sequential = base.transcribe(clip, "en")
    assert [(w["start_seconds"], w["end_seconds"]) for w in batched.info["windows"]] == [
        (w["start_seconds"], w["end_seconds"]) for w in sequential.info["windows"]]
    assert error_counts(sequential.text, batched.text, "en").rate <= 0.05, (sequential.text, batched.text)


def test_cantonese_is_read_as_mandarin_by_base(base, tmp_path):
    assert base.transcribe(speak("你好", "yue", tmp_path), "yue").language_used == "zh"


def test_rejects_empty_audio(base):
    with pytest.raises(ValueError, match="non-empty mono"):
        base.transcribe(np.zeros(0, dtype=np.float32), "en")


def test_identity_names_pinned_weights_engine_and_decoding(base):
    identity = base.identity
    assert identity["sha256"] == weights.BASE_MODEL_SHA256
    assert (identity["engine"], identity["compute_type"], identity["device"]) == ("faster-whisper", "int8", "cpu")
    assert identity["decoding"]["condition_on_previous_text"] is False
    assert identity["decoding"]["temperatures"][0] == 0.0
    assert identity["ctranslate2"] and identity["faster_whisper"]


def test_base_folder_is_assembled_once_and_rebuilt_when_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("MHEVAL_CACHE", str(tmp_path))
    folder = weights.base_folder()
    assert folder.parent == tmp_path / "whisper"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.bin", "tokenizer.json",
                                                        "verified.json", "vocabulary.txt"]
    assert weights.sha256_file(folder / "model.bin") == weights.BASE_MODEL_SHA256
    stamp = (folder / "model.bin").stat().st_mtime_ns
    assert weights.base_folder() == folder and (folder / "model.bin").stat().st_mtime_ns == stamp  # reused

    with open(folder / "model.bin", "r+b") as f:  # flip bytes inside the tensor data
        f.seek(1 << 20)
        f.write(b"\xff" * 64)
    assert weights.base_folder() == folder
    assert weights.sha256_file(folder / "model.bin") == weights.BASE_MODEL_SHA256  # size/mtime changed → rebuilt
    assert not [p for p in folder.iterdir() if p.name.endswith(".partial")]


def test_conversion_matches_whisper_layout():
    from whisper.model import sinusoids

    model = asr.load_asr(OPENAI).model
    assert (model.dims.n_audio_layer, model.dims.n_text_state, model.dims.n_vocab) == (6, 512, 51865)
    # the encoder's positional table is a fixed sinusoid in openai-whisper; the converted one must equal it
    assert torch.allclose(model.encoder.positional_embedding, sinusoids(1500, 512), atol=1e-3)
    assert model.alignment_heads.to_dense().sum() == 8


def test_conversion_is_cached_and_rebuilt_when_corrupt(tmp_path, monkeypatch):
    from mheval.asr.openai_whisper_engine import load_checkpoint

    monkeypatch.setenv("MHEVAL_CACHE", str(tmp_path))
    conversions = []
    real_convert = ct2_convert.convert_base
    monkeypatch.setattr(ct2_convert, "convert_base", lambda: conversions.append(1) or real_convert())

    path = ct2_convert.base_checkpoint_path()
    assert len(conversions) == 1 and path.parent == tmp_path / "whisper"
    assert path.with_suffix(".sha256").read_text() == weights.sha256_file(path)

    assert ct2_convert.base_checkpoint_path() == path
    assert len(conversions) == 1  # second load reuses the cache

    with open(path, "r+b") as f:  # flip bytes inside the tensor data
        f.seek(path.stat().st_size // 2)
        f.write(b"\xff" * 64)
    assert ct2_convert.base_checkpoint_path() == path
    assert len(conversions) == 2  # sha256 mismatch → rebuilt
    assert path.with_suffix(".sha256").read_text() == weights.sha256_file(path)
    assert load_checkpoint(path, "cpu").dims.n_text_layer == 6


def test_wer_with_the_default_engine_never_imports_torch():
    """Peak memory: the default engine needs neither torch nor openai-whisper (issue 13: WER scoring used 5x the
    memory of plain faster-whisper). Everything `mheval run --metrics wer` loads, then one transcription."""
    code = ("import sys, numpy as np; from mheval.cli import build_parser; build_parser(); "
            "import mheval.runner, mheval.report, mheval.results, mheval.gate; from mheval.metrics import create_metric; "
            "create_metric('wer').asr.transcribe(np.zeros(16000, np.float32), 'en'); "
            "print(sorted(m for m in ('torch', 'whisper') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def _cuda_devices() -> int:
    import ctranslate2

    return ctranslate2.get_cuda_device_count()


@pytest.mark.skipif(_cuda_devices() == 0, reason="needs a CUDA GPU visible to CTranslate2")
def test_cuda_float16_batched_reads_as_the_cpu(base, speech):
    """wer.device=cuda: float16 and the batched pipeline. Runs only on a GPU machine (never in this project's CI)."""
    gpu = asr.load_asr(ASRSettings(device="cuda"))
    assert (gpu.identity["compute_type"], gpu.identity["batch_size"]) == ("float16", 8)
    pairs = [(base.transcribe(audio, "en").text, gpu.transcribe(audio, "en").text) for audio in speech["en"]]
    between = sum((error_counts(cpu, cuda, "en") for cpu, cuda in pairs), ErrorCounts(0, 0, 0, 0, 0))
    assert between.rate <= 0.10, pairs
