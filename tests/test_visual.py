"""BRISQUE (OpenCV's shipped LIVE model) and technical measures on puppet clips with blur and frozen video."""
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mheval.media import ClipMedia, analysis_size, write_mp4
from mheval.metrics import ClipContext, create_metric
from mheval.metrics.visual import brisque_directory
from mheval.results import summary
from mheval.suites import load_suite
from mheval.validate import (ValidateConfig, Workspace, check_blur, check_frozen, freeze, gaussian_blur, rewrite_clip,
                             still_portrait)

ITEM = load_suite("smoke").items[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return Workspace(tmp_path_factory.mktemp("visual"), ValidateConfig())


def test_brisque_model_files_are_found():
    assert brisque_directory() is not None
    metric = create_metric("brisque")
    assert metric.unavailable() is None
    assert [Path(w.path).name for w in metric.weights()] == ["brisque_model_live.yml", "brisque_range_live.yml"]


def test_missing_brisque_files_make_the_metric_unavailable(tmp_path, monkeypatch):
    monkeypatch.setattr("mheval.metrics.visual.BRISQUE_DIRS", ())
    monkeypatch.setattr("cv2.data.haarcascades", str(tmp_path))
    reason = create_metric("brisque").unavailable()
    assert "opencv-data" in reason and "model_dir" in reason


def test_blur_raises_brisque_and_lowers_sharpness_and_flicker(work):
    checks = check_blur(work, ITEM)
    assert len(checks) == 3 and all(check.passed for check in checks), checks


def test_frozen_video_is_detected_and_flicker_falls(work):
    checks = check_frozen(work, ITEM)
    assert all(check.passed for check in checks), checks


def test_stronger_blur_scores_worse(work, tmp_path):
    clip = work.puppet(ITEM)
    scores = []
    for sigma in (0.7, 3.0):
        blurred = rewrite_clip(clip, tmp_path / f"blur{sigma}.mp4", frames=lambda f: gaussian_blur(f, sigma))
        scores.append(work.score("technical", blurred, ITEM)["sharpness"])
    assert scores[0] > scores[1]


def test_exposure_clipping_counts_crushed_pixels(work, tmp_path):
    clip = work.puppet(ITEM)
    half_black = rewrite_clip(clip, tmp_path / "dark.mp4", frames=lambda f: np.concatenate(
        [np.zeros_like(f[:, : f.shape[1] // 2]), f[:, f.shape[1] // 2:]], axis=1))
    clean = work.score("technical", clip, ITEM)
    dark = work.score("technical", half_black, ITEM)
    assert clean["underexposed"] < 1e-3 and clean["overexposed"] < 1e-3
    assert dark["underexposed"] == pytest.approx(0.5, abs=0.03)


def test_scoring_twice_gives_identical_numbers(work):
    clip = work.puppet(ITEM)
    for name in ("brisque", "technical"):
        first, second = (create_metric(name).score(ClipContext(ClipMedia(clip), ITEM, "puppet")) for _ in range(2))
        assert first == second


def test_analysis_size_and_frame_sampling(work):
    assert analysis_size(896, 512, 256) == (448, 256) and analysis_size(1080, 1920, 512) == (512, 910)
    assert analysis_size(448, 256, 360, enlarge=False) == (448, 256)
    media = ClipMedia(work.puppet(ITEM))
    sampled = list(media.frames(short_side=128, grey=True, every_seconds=0.25))
    late = np.array([frame.time for frame in sampled]) - np.arange(len(sampled)) * 0.25
    assert ((late > -1e-6) & (late < 0.04)).all()   # the first frame at or after each grid point
    assert len(sampled) == int((media.seconds - 0.04) * 4) + 1 and sampled[0].image.shape == (128, 224)


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A natural-looking image: random detail at several scales (a 1/f-like spectrum), uint8 RGB."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float32)
    for scale in (4, 16, 64, 256):
        coarse = rng.normal(0, 1, (height // scale + 1, width // scale + 1, 3)).astype(np.float32)
        image += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) * scale ** 0.5
    return np.clip(128 + 12 * image, 0, 255).astype(np.uint8)


def test_brisque_is_computed_at_one_analysis_size_whatever_the_native_size(tmp_path):
    """Issue 12 item 10: one picture delivered at 1080p, 720p and 360p scores alike (at native sizes: 47, 34, 15),
    and the analysis size is part of the config."""
    picture = _texture(1080, 1920)
    scores = []
    for height in (1080, 720, 360):
        frame = cv2.resize(picture, (height * 16 // 9, height), interpolation=cv2.INTER_AREA)
        write_mp4(tmp_path / f"{height}.mp4", np.stack([frame] * 6), 25, None, 0)
        clip = ClipContext(ClipMedia(tmp_path / f"{height}.mp4"), ITEM, "test")
        scores.append(create_metric("brisque").score(clip)["brisque"])
    assert max(scores) - min(scores) < 3.0
    assert create_metric("brisque").config()["analysis_short_side"] == 512


def test_sharpness_is_a_diagnostic_not_the_ranking_number(work, tmp_path):
    """Issue 12 item 10: grain raises the Laplacian variance as detail does, so `sharpness` would rank a noisier
    model first; the technical summary ranks by the frozen-frame ratio instead."""
    clip = work.puppet(ITEM)
    rng = np.random.default_rng(0)
    grainy = rewrite_clip(clip, tmp_path / "grainy.mp4", frames=lambda f: np.clip(
        f + rng.normal(0, 8, f.shape), 0, 255).astype(np.uint8))
    assert work.score("technical", grainy, ITEM)["sharpness"] > 2 * work.score("technical", clip, ITEM)["sharpness"]
    table = pd.DataFrame({"model": ["a", "b"], "language": "en", "item_id": "p", "clip_status": "ok",
                          "technical.status": "ok", "technical.sharpness": [900.0, 100.0],
                          "technical.frozen_ratio": [0.2, 0.0]})
    rows = summary(table, ["technical"])
    assert set(rows.field) == {"frozen_ratio"} and "sharpness" not in set(rows.field)


def test_still_portrait_whose_mouth_moves_is_not_frozen(work, tmp_path):
    """Issue 12 item 10: frozen means the whole frame is static. Only the mouth moves in a still portrait, so its
    pairs are frozen only where the puppet's are (no speech), not wherever the mean change is small (the old
    criterion called 69 % of them frozen)."""
    clip = work.puppet(ITEM)
    portrait = rewrite_clip(clip, tmp_path / "portrait.mp4", frames=still_portrait)
    frozen = rewrite_clip(clip, tmp_path / "frozen.mp4", frames=freeze)
    silent_share = 1 - work.score("sync", clip, ITEM)["speech_seconds"] / ClipMedia(clip).seconds
    assert work.score("technical", portrait, ITEM)["frozen_ratio"] <= silent_share
    assert work.score("technical", frozen, ITEM)["frozen_ratio"] == 1.0


def test_one_frame_has_no_temporal_measures(work, tmp_path):
    """Issue 12 item 5: one frame has no frame pair: flicker and frozen ratio are not applicable (None), never
    "flicker 0, frozen 100 %"; the per-frame measures are still there."""
    single = rewrite_clip(work.puppet(ITEM), tmp_path / "one.mp4", frames=lambda f: f[:1])
    result = work.score("technical", single, ITEM)
    assert result["temporal_flicker"] is None and result["frozen_ratio"] is None
    assert result["sharpness"] > 0 and "one frame" in result["detail"]["temporal"]
    assert work.score("brisque", single, ITEM)["detail"]["frames"] == [0]


def _moving_clip(path: Path, seconds: float) -> Path:
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (45, 80, 3), dtype=np.uint8), (640, 360), interpolation=cv2.INTER_CUBIC)
    write_mp4(path, (np.roll(base, 3 * index, axis=1) for index in range(int(seconds * 25))), 25, None, 0)
    return path


def test_scoring_memory_does_not_grow_with_the_clip(tmp_path):
    """Issue 12 item 16: frames are streamed at the analysis size, so the arrays a metric holds are the same for a
    2 s and an 8 s clip (decoding whole clips to full-resolution arrays grew them 4×)."""
    clips = {seconds: ClipContext(ClipMedia(_moving_clip(tmp_path / f"{seconds}s.mp4", seconds)), ITEM, "test")
             for seconds in (2, 8)}
    for name in ("technical", "brisque"):   # first calls load models and caches: not what is measured
        create_metric(name).score(clips[2])
    peaks = []
    for clip in clips.values():
        tracemalloc.start()
        for name in ("technical", "brisque"):
            create_metric(name).score(clip)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.3 * peaks[0]
