"""speech_quality (DNSMOS P.835) on real speech: LibriVox readings, clean, with white noise and hard-clipped."""
from pathlib import Path

import numpy as np
import pytest

from mheval.media import ASR_SAMPLE_RATE, ClipMedia
from mheval.metrics import ClipContext, NotApplicable, create_metric
from mheval.metrics.speech_quality import SpeechQualityDetail
from mheval.suites import load_suite
from mheval.validate import ValidateConfig, Workspace, check_speech_noise
from tests.speech_recordings import clip_with, overdriven, speaker_audio, white_noise

ITEM = load_suite("smoke").items[0]
FIVE_SECONDS = 5 * ASR_SAMPLE_RATE


@pytest.fixture(scope="module")
def metric():
    return create_metric("speech_quality")


def score(metric, path: Path) -> dict:
    return metric.score(ClipContext(ClipMedia(path), ITEM, "test"))


@pytest.mark.parametrize("excerpt", [0, 1])
def test_clean_ranks_above_noisy_above_heavily_clipped(metric, tmp_path, excerpt):
    reading = speaker_audio("librivox")[excerpt * FIVE_SECONDS:(excerpt + 1) * FIVE_SECONDS]
    versions = {"clean": reading, "noise 20 dB": white_noise(reading, 20), "noise 5 dB": white_noise(reading, 5),
                "clipped": overdriven(reading, 30)}
    scores = {name: score(metric, clip_with(tmp_path / f"{excerpt}-{name}.mp4", audio))
              for name, audio in versions.items()}
    overall = {name: result["ovrl"] for name, result in scores.items()}
    assert overall["clean"] > overall["noise 20 dB"] > overall["clipped"], overall
    assert overall["noise 20 dB"] > overall["noise 5 dB"], overall
    assert scores["clean"]["bak"] > scores["noise 20 dB"]["bak"], "noise is background: BAK must fall"
    assert scores["clean"]["sig"] > scores["clipped"]["sig"], "clipping distorts the signal: SIG must fall"


def test_scores_are_mos_like_and_the_detail_reads_back(metric, tmp_path):
    reading = speaker_audio("librivox")[:FIVE_SECONDS]
    result = score(metric, clip_with(tmp_path / "clean.mp4", reading))
    assert all(1.0 <= result[name] <= 5.0 for name in ("ovrl", "sig", "bak", "p808"))
    assert 4.0 < result["speech_seconds"] <= 5.0
    detail = type(metric).read_detail(result["detail"])
    assert isinstance(detail, SpeechQualityDetail) and detail.model == "DNSMOS P.835"
    assert detail.audio_seconds == pytest.approx(5.0, abs=0.1) and detail.speech_segments


def test_audio_only_clip_is_scored_like_one_with_video(metric, tmp_path):
    reading = speaker_audio("cards")[:FIVE_SECONDS]
    with_video = score(metric, clip_with(tmp_path / "video.mp4", reading))
    audio_only = score(metric, clip_with(tmp_path / "audio.mp4", reading, video=False))
    assert audio_only["ovrl"] == pytest.approx(with_video["ovrl"], abs=1e-6)


def test_no_audio_track_is_not_applicable(metric, tmp_path):
    with pytest.raises(NotApplicable, match="no audio"):
        score(metric, clip_with(tmp_path / "silent-film.mp4", None))


@pytest.mark.parametrize("kind", ["silence", "white noise", "tone"])
def test_audio_without_speech_is_not_applicable(metric, tmp_path, kind):
    time = np.arange(FIVE_SECONDS) / ASR_SAMPLE_RATE
    audio = {"silence": np.zeros(FIVE_SECONDS),
             "white noise": np.random.default_rng(0).normal(0, 0.1, FIVE_SECONDS),
             "tone": 0.3 * np.sin(2 * np.pi * 440 * time)}[kind].astype(np.float32)
    with pytest.raises(NotApplicable, match="no speech"):
        score(metric, clip_with(tmp_path / f"{kind}.mp4", audio))


def test_too_little_speech_is_not_applicable(tmp_path):
    word = speaker_audio("cards")[:ASR_SAMPLE_RATE]   # "ten of clubs": about 0.9 s of speech
    clip = clip_with(tmp_path / "word.mp4", np.concatenate([word, np.zeros(2 * ASR_SAMPLE_RATE, np.float32)]))
    assert score(create_metric("speech_quality"), clip)["speech_seconds"] < 1.5
    with pytest.raises(NotApplicable, match="min_speech_seconds 1.5"):
        score(create_metric("speech_quality", min_speech_seconds="1.5"), clip)


def test_weights_are_the_dnsmos_and_vad_onnx_files():
    metric = create_metric("speech_quality")
    assert metric.unavailable() is None
    names = [Path(weight.path).name for weight in metric.weights()]
    assert names == ["sig_bak_ovr.onnx", "model_v8.onnx", "silero_vad_v6.onnx"]
    assert all(len(weight.sha256) == 64 for weight in metric.weights())
    personalized = create_metric("speech_quality", personalized="true").weights()[0]
    assert "pdnsmos_models" in personalized.path and personalized.sha256 != metric.weights()[0].sha256


def test_without_speechmos_the_metric_is_unavailable(monkeypatch):
    monkeypatch.setattr("mheval.metrics.speech_quality.speechmos_directory", lambda: None)
    metric = create_metric("speech_quality")
    assert "pip install speechmos" in metric.unavailable() and metric.weight_paths() == []


def test_unknown_option_is_an_error():
    with pytest.raises(ValueError, match="min_speech_seconds"):
        create_metric("speech_quality", min_speech_second="1")


@pytest.mark.slow
def test_validate_noise_on_the_puppet_lowers_quality(tmp_path):
    work = Workspace(tmp_path, ValidateConfig())
    checks = check_speech_noise(work, list(load_suite("smoke").items[:2]))
    assert checks and all(check.passed for check in checks), checks
