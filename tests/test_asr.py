"""Real Whisper base (converted from the PyPI CTranslate2 packages) on speech synthesised here with espeak-ng."""
import subprocess
from math import gcd

import numpy as np
import pytest
import torch
from scipy.io import wavfile
from scipy.signal import resample_poly
from whisper.model import sinusoids

from mheval import asr
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
# Bounds on corpus WER. Measured on these sentences (espeak-ng 1.51, Whisper base, beam 5, 2-core CPU): English
# 0.031 (one error: "nine o'clock" → "either clock"), German 0.44 (espeak's German is hard for base: per sentence
# 0.27 0.43 0.88 0.44 0.18 0.62). environment.md reports 0.067 and 0.21 on other text, so sentence choice moves
# these a lot. Margins absorb a few words flipping on another CPU; a wrong conversion or language token scores ≈1.
WER_BOUNDS = {"en": 0.15, "de": 0.60}


def speak(text: str, voice: str, tmp_path) -> np.ndarray:
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True)
    rate, samples = wavfile.read(wav)
    g = gcd(asr.SAMPLE_RATE, rate)
    return resample_poly(samples.astype(np.float32) / 32768, asr.SAMPLE_RATE // g, rate // g).astype(np.float32)


@pytest.fixture(scope="module")
def base():
    return asr.load_asr("base")


@pytest.mark.parametrize("language, voice, sentences", [("en", "en-us", ENGLISH), ("de", "de", GERMAN)])
def test_transcribes_espeak_speech(base, language, voice, sentences, tmp_path):
    transcripts = [base.transcribe(speak(sentence, voice, tmp_path), language) for sentence in sentences]
    assert {t.language_used for t in transcripts} == {language}
    total = sum((error_counts(s, t.text, language) for s, t in zip(sentences, transcripts)), ErrorCounts(0, 0, 0, 0, 0))
    assert total.rate < WER_BOUNDS[language], [t.text for t in transcripts]


def test_cantonese_is_read_as_mandarin_by_base(base, tmp_path):
    transcript = base.transcribe(speak("你好", "yue", tmp_path), "yue")
    assert transcript.language_used == "zh"


def test_rejects_empty_audio(base):
    with pytest.raises(ValueError, match="non-empty mono"):
        base.transcribe(np.zeros(0, dtype=np.float32), "en")


def test_identity_names_pinned_weights_and_decoding(base):
    identity = base.identity
    assert identity["sha256"] == asr.BASE_MODEL_SHA256
    assert identity["decoding"]["condition_on_previous_text"] is False
    assert identity["decoding"]["temperatures"][0] == 0.0


def test_conversion_matches_whisper_layout(base):
    model = base.model
    assert (model.dims.n_audio_layer, model.dims.n_text_state, model.dims.n_vocab) == (6, 512, 51865)
    # the encoder's positional table is a fixed sinusoid in openai-whisper; the converted one must equal it
    assert torch.allclose(model.encoder.positional_embedding, sinusoids(1500, 512), atol=1e-3)
    assert model.alignment_heads.to_dense().sum() == 8


def test_conversion_is_cached_and_rebuilt_when_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("MHEVAL_CACHE", str(tmp_path))
    conversions = []
    real_convert = asr.convert_base
    monkeypatch.setattr(asr, "convert_base", lambda: conversions.append(1) or real_convert())

    path = asr.base_checkpoint_path()
    assert len(conversions) == 1 and path.parent == tmp_path / "whisper"
    assert path.with_suffix(".sha256").read_text() == asr.sha256_file(path)

    assert asr.base_checkpoint_path() == path
    assert len(conversions) == 1  # second load reuses the cache

    with open(path, "r+b") as f:  # flip bytes inside the tensor data
        f.seek(path.stat().st_size // 2)
        f.write(b"\xff" * 64)
    assert asr.base_checkpoint_path() == path
    assert len(conversions) == 2  # sha256 mismatch → rebuilt
    assert path.with_suffix(".sha256").read_text() == asr.sha256_file(path)
    assert asr.load_checkpoint(path, "cpu").dims.n_text_layer == 6
    assert not list((tmp_path / "whisper").glob("*.tmp"))
