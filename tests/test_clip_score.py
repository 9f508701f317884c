"""CLIP metrics with a RANDOMLY INITIALISED tiny open_clip model saved to a local checkpoint in this test.

No CLIP weights can be had offline, so these tests check plumbing and invariants only (checkpoint loading, prompt
chunking, determinism, sensitivity to the prompt, the unavailable path), never whether the scores mean anything.
"""
import dataclasses
import socket

import numpy as np
import pytest

from mheval.media import ClipMedia
from mheval.metrics import ClipContext, create_metric
from mheval.metrics.clip_score import cached_checkpoint, load_backbone
from mheval.suites import load_suite
from mheval.validate import ValidateConfig, Workspace
from tiny_clip import save_tiny_clip

TINY = "mheval-tiny-random-clip"
ITEMS = load_suite("smoke").items


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("clip")
    return save_tiny_clip(TINY, directory, directory / "random_tiny_clip.pt")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    work = Workspace(tmp_path_factory.mktemp("clips"), ValidateConfig())
    return ClipContext(ClipMedia(work.puppet(ITEMS[0])), ITEMS[0], "puppet")


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)


def metric(name, checkpoint, **options):
    return create_metric(name, model=TINY, pretrained=str(checkpoint), **options)


def test_default_weights_missing_offline_are_unavailable_with_instructions(tmp_path, no_network, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))     # an empty hub cache; the test session is offline (conftest)
    for name in ("clip_score", "clip_iqa"):
        reason = create_metric(name).unavailable()
        assert reason.startswith("CLIP weights ViT-B-32/laion2b_s34b_b79k: "
                                 "laion/CLIP-ViT-B-32-laion2B-s34B-b79K@1a25a446712b is not in")
        assert "offline" in reason and "mheval weights fetch DIR" in reason and f"{name}.pretrained=" in reason


def test_weights_of_another_tag_in_the_hub_cache_are_found_offline(tmp_path, no_network):
    repo = tmp_path / "models--laion--CLIP-ViT-B-32-DataComp.XL-s13B-b90K"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    found = cached_checkpoint("ViT-B-32", "datacomp_xl_s13b_b90k", str(tmp_path))
    assert found == snapshot / "open_clip_model.safetensors"
    assert create_metric("clip_score", pretrained="datacomp_xl_s13b_b90k", cache_dir=str(tmp_path)).unavailable() is None


def test_bad_path_or_tag_is_unavailable(tmp_path):
    assert "does not exist" in create_metric("clip_score", pretrained=str(tmp_path / "none.pt")).unavailable()
    assert "no pretrained tag" in create_metric("clip_score", pretrained="no_such_tag").unavailable()


def test_local_checkpoint_is_available_and_pinned(checkpoint):
    scorer = metric("clip_score", checkpoint)
    assert scorer.unavailable() is None
    assert scorer.weights()[0].path == str(checkpoint) and len(scorer.weights()[0].sha256) == 64


def test_long_prompt_is_split_into_whole_sentence_chunks_that_fit(checkpoint):
    backbone = metric("clip_score", checkpoint).backbone
    prompt = ITEMS[0].visual_prompt
    chunks = backbone.sentence_chunks(prompt)
    assert len(backbone.tokenizer.encode(prompt)) > 75 and len(chunks) > 1
    assert all(len(backbone.tokenizer.encode(chunk)) <= backbone.context_length - 2 for chunk in chunks)
    assert " ".join(chunks) == " ".join(prompt.split())
    assert backbone.sentence_chunks("A man smiles.") == ["A man smiles."]


def test_identical_inputs_give_identical_scores(checkpoint, clip):
    first = metric("clip_score", checkpoint).score(clip)
    load_backbone.cache_clear()
    fresh = ClipContext(ClipMedia(clip.media.path), clip.item, "puppet")
    assert metric("clip_score", checkpoint).score(fresh) == first
    assert first["clip_score"] >= first["clip_score_worst"]
    assert -100 <= first["clip_score_worst"] <= 100


def test_score_changes_with_the_prompt(checkpoint, clip):
    scorer = metric("clip_score", checkpoint)
    own = scorer.score(clip)["clip_score"]
    other_item = dataclasses.replace(clip.item, prompt=ITEMS[2].prompt)
    other = scorer.score(ClipContext(clip.media, other_item, "puppet"))["clip_score"]
    assert other != own


def test_frame_rate_sets_the_number_of_frames(checkpoint, clip):
    """Frames are sampled on a time grid from the first frame: one per 1 / frames_per_second seconds of video."""
    counts = [metric("clip_score", checkpoint, frames_per_second=rate).score(clip)["detail"]["frames"]
              for rate in ("1", "4")]
    span = clip.media.seconds - 1 / clip.media.fps   # first to last frame
    assert counts == [int(span * 1) + 1, int(span * 4) + 1]


def test_quality_scores_are_probabilities_and_repeatable(checkpoint, clip):
    first = metric("clip_iqa", checkpoint).score(clip)
    assert set(first) == {"clip_iqa", "clip_iqa_sharp", "clip_iqa_clean"}
    assert all(0.0 <= value <= 1.0 for value in first.values())
    load_backbone.cache_clear()
    assert metric("clip_iqa", checkpoint).score(ClipContext(ClipMedia(clip.media.path), clip.item, "p")) == first
    assert np.isfinite(list(first.values())).all()


def test_run_reports_text_alignment_unavailable_then_scores_it_with_a_local_checkpoint(
        checkpoint, tmp_path, capsys, monkeypatch):
    from mheval.cli import main

    monkeypatch.setenv("COLUMNS", "250")
    common = ["run", "--suite", "smoke", "--limit", "1", "--languages", "en", "--out", str(tmp_path / "run"),
              "--metrics", "sync,brisque,technical,clip_score", "--no-progress"]
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))   # the pinned default is not here, and we are offline
    assert main(common) == 0
    out = capsys.readouterr().out
    assert all(column in out for column in ("sync →0", "brisque ↓", "technical ↓"))
    assert ("clip_score: unavailable: CLIP weights ViT-B-32/laion2b_s34b_b79k: "
            "laion/CLIP-ViT-B-32-laion2B-s34B-b79K@1a25a446712b is not in") in out
    assert main([*common, "--metric-option", f"clip_score.model={TINY}",
                 "--metric-option", f"clip_score.pretrained={checkpoint}"]) == 0
    out = capsys.readouterr().out
    assert "unavailable" not in out and "clip_score ↑" in out
