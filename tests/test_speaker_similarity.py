"""speaker_similarity (Resemblyzer) on real voices: one LibriVox reader against himself and against two other men."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from mheval.media import ASR_SAMPLE_RATE, ClipMedia, write_mp4
from mheval.metrics import ClipContext, NotApplicable, create_metric
from mheval.metrics.speaker_similarity import SpeakerSimilarityDetail
from mheval.suites import load_suite
from mheval.validate import ValidateConfig, Workspace, check_other_voice
from tests.speech_recordings import clip_with, speaker_audio

ITEM = load_suite("smoke").items[0]
SECOND = ASR_SAMPLE_RATE


@pytest.fixture(scope="module")
def metric():
    return create_metric("speaker_similarity")


def score(metric, path: Path, reference: Path | None = None) -> dict:
    item = dataclasses.replace(ITEM, reference_audio=reference)
    return metric.score(ClipContext(ClipMedia(path), item, "test"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The LibriVox reader's first 8 seconds, as an a2v item's reference audio (audio-only mp4)."""
    path = tmp_path_factory.mktemp("reference") / "reader.m4a.mp4"
    write_mp4(path, None, 25, speaker_audio("librivox")[:8 * SECOND], ASR_SAMPLE_RATE)
    return path


def test_same_voice_is_more_alike_than_another_voice_against_the_reference(metric, reference, tmp_path):
    same = clip_with(tmp_path / "same.mp4", speaker_audio("librivox")[10 * SECOND:15 * SECOND])
    same_score = score(metric, same, reference)
    for other in ("cards", "raw"):
        other_score = score(metric, clip_with(tmp_path / f"{other}.mp4", speaker_audio(other)[:5 * SECOND]), reference)
        assert same_score["similarity"] > other_score["similarity"] + 0.1, (other, same_score, other_score)
    assert same_score["against_reference"] == 1 and same_score["reference_speech_seconds"] > 6
    detail = type(metric).read_detail(same_score["detail"])
    assert isinstance(detail, SpeakerSimilarityDetail)
    assert detail.compared == "reference audio" and detail.reference_audio == str(reference)
    assert detail.clip_segments and detail.reference_segments


def test_within_clip_a_voice_change_half_way_scores_lower(metric, tmp_path):
    reading = speaker_audio("librivox")
    steady = clip_with(tmp_path / "steady.mp4", reading[:6 * SECOND])
    changed = clip_with(tmp_path / "changed.mp4", np.concatenate([reading[:3 * SECOND],
                                                                  speaker_audio("raw")[:3 * SECOND]]))
    steady_score, changed_score = score(metric, steady), score(metric, changed)
    assert steady_score["similarity"] > changed_score["similarity"] + 0.1, (steady_score, changed_score)
    assert steady_score["against_reference"] == 0 and steady_score["reference_speech_seconds"] is None
    detail = type(metric).read_detail(steady_score["detail"])
    assert detail.compared == "first vs second half of the clip's speech" and detail.reference_audio is None


def test_the_reference_is_read_once_per_file_content(metric, reference, tmp_path, monkeypatch):
    clip = clip_with(tmp_path / "clip.mp4", speaker_audio("librivox")[10 * SECOND:14 * SECOND])
    score(metric, clip, reference)
    monkeypatch.setattr("mheval.metrics.speaker_similarity.read_audio",
                        lambda *args: pytest.fail("the reference was decoded again"))
    assert score(metric, clip, reference)["similarity"] > 0.5


def test_no_audio_track_is_not_applicable(metric, tmp_path):
    with pytest.raises(NotApplicable, match="no audio"):
        score(metric, clip_with(tmp_path / "silent-film.mp4", None))


def test_clip_without_speech_is_not_applicable(metric, reference, tmp_path):
    noise = np.random.default_rng(0).normal(0, 0.1, 4 * SECOND).astype(np.float32)
    clip = clip_with(tmp_path / "noise.mp4", noise)
    for ref in (None, reference):
        with pytest.raises(NotApplicable, match="no speech"):
            score(metric, clip, ref)


def test_reference_audio_without_speech_is_not_applicable_naming_the_file(metric, tmp_path):
    silent = tmp_path / "silent-reference.mp4"
    write_mp4(silent, None, 25, np.zeros(3 * SECOND, np.float32), ASR_SAMPLE_RATE)
    clip = clip_with(tmp_path / "clip.mp4", speaker_audio("librivox")[:4 * SECOND])
    with pytest.raises(NotApplicable, match="reference audio silent-reference.mp4 has no speech"):
        score(metric, clip, silent)


def test_speech_too_short_to_split_is_not_applicable_without_a_reference(metric, reference, tmp_path):
    command = speaker_audio("cards")[int(1.1 * SECOND):int(3.06 * SECOND)]   # "four queen of clubs", ≈ 1.7 s
    clip = clip_with(tmp_path / "short.mp4", np.concatenate([command, np.zeros(SECOND, np.float32)]))
    with pytest.raises(NotApplicable, match="too short to split"):
        score(metric, clip)
    assert score(metric, clip, reference)["against_reference"] == 1   # long enough against a reference


def test_weights_are_resemblyzers_encoder_and_the_vad():
    metric = create_metric("speaker_similarity")
    assert metric.unavailable() is None
    assert [Path(weight.path).name for weight in metric.weights()] == ["pretrained.pt", "silero_vad_v6.onnx"]
    assert all(len(weight.sha256) == 64 for weight in metric.weights())


def test_without_resemblyzer_the_metric_is_unavailable(monkeypatch):
    monkeypatch.setattr("mheval.metrics.speaker_similarity.encoder_weights", lambda: None)
    metric = create_metric("speaker_similarity")
    assert "pip install resemblyzer" in metric.unavailable() and metric.weight_paths() == []


@pytest.mark.slow
def test_validate_another_voice_lowers_similarity(tmp_path):
    checks = check_other_voice(Workspace(tmp_path, ValidateConfig()), ITEM)
    assert len(checks) == 2 and all(check.passed for check in checks), checks
