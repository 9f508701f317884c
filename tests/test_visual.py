"""BRISQUE (OpenCV's shipped LIVE model) and technical measures on puppet clips with blur and frozen video."""
from pathlib import Path

import numpy as np
import pytest

from mheval.media import ClipMedia
from mheval.metrics import ClipContext, create_metric
from mheval.metrics.visual import brisque_directory, grey_frames, sample_indices
from mheval.suites import load_suite
from mheval.validate import ValidateConfig, Workspace, check_blur, check_frozen, gaussian_blur, rewrite_clip

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


def test_analysis_size_and_frame_sampling():
    frames = np.zeros((10, 512, 896, 3), np.uint8)
    assert grey_frames(frames).shape == (10, 256, 448)
    assert sample_indices(125, 25.0, 4.0).tolist() == np.linspace(0, 124, 20).round().astype(int).tolist()
    assert sample_indices(3, 25.0, 4.0).tolist() == [0]
