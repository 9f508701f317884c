"""SyncNet LSE-C / LSE-D: architecture against the documented checkpoint layout, each pipeline piece against
hand-computed values, and the whole metric end to end with RANDOMLY INITIALISED weights (no SyncNet weights can be
had offline: the numbers of that run mean nothing, only that every step runs and the plumbing is right)."""
import json

import numpy as np
import pytest
import torch

from mheval.cli import main
from mheval.metrics import create_metric
from mheval.metrics.syncnet import (PAD_VALUE, SyncNetConfig, build_syncnet, crop_region, int16_scale, load_syncnet,
                                    mfcc_features, offset_distances, resample_times, track_faces)


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("syncnet") / "random_syncnet_v2.model"
    torch.save(build_syncnet().state_dict(), path)
    return path


def test_state_dict_has_the_checkpoint_layout():
    state = build_syncnet().state_dict()
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    convs_audio = {0: (64, 1, 3, 3), 4: (192, 64, 3, 3), 8: (384, 192, 3, 3), 11: (256, 384, 3, 3),
                   14: (256, 256, 3, 3), 18: (512, 256, 5, 4)}
    convs_lip = {0: (96, 3, 5, 7, 7), 4: (256, 96, 1, 5, 5), 8: (256, 256, 1, 3, 3), 11: (256, 256, 1, 3, 3),
                 14: (256, 256, 1, 3, 3), 18: (512, 256, 1, 6, 6)}
    for tower, convs in (("netcnnaud", convs_audio), ("netcnnlip", convs_lip)):
        for index, shape in convs.items():
            assert shapes[f"{tower}.{index}.weight"] == shape
            assert f"{tower}.{index + 1}.running_var" in shapes   # BatchNorm right after each conv
    for head in ("netfcaud", "netfclip"):
        assert shapes[f"{head}.0.weight"] == (512, 512) and shapes[f"{head}.1.running_mean"] == (512,)
        assert shapes[f"{head}.3.weight"] == (1024, 512)
    assert {key.split(".")[0] for key in state} == {"netcnnaud", "netcnnlip", "netfcaud", "netfclip"}


def test_towers_map_windows_to_1024_values(random_checkpoint):
    model = load_syncnet(random_checkpoint, "cpu")
    with torch.inference_mode():
        assert model.forward_lip(torch.rand(2, 3, 5, 224, 224) * 255).shape == (2, 1024)
        assert model.forward_aud(torch.randn(2, 1, 13, 20)).shape == (2, 1024)


def test_a_file_that_is_not_syncnet_is_a_clear_error(tmp_path):
    path = tmp_path / "other.model"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a SyncNet"):
        load_syncnet(path, "cpu")


def uniform(frame_count: int, fps: float) -> np.ndarray:
    return resample_times(np.arange(frame_count) / fps, 1 / fps)


def test_resampling_to_25_fps_by_timestamp():
    assert list(uniform(5, 25.0)) == [0, 1, 2, 3, 4]
    assert list(uniform(10, 50.0)) == [0, 2, 4, 6, 8]
    from_24 = uniform(48, 24.0)
    assert len(from_24) == 50 and from_24[-1] == 47
    assert sorted(set(from_24)) == list(range(48))          # nothing dropped, two frames shown twice
    assert len(uniform(30, 30.0)) == 25 and len(set(uniform(30, 30.0))) == 25
    # variable frame rate: each 25-fps frame shows the frame nearest its time (ffmpeg's fps filter rounds the same way)
    held = resample_times(np.array([0.0, 0.04, 0.16, 0.2]), 0.04)
    assert list(held) == [0, 1, 1, 2, 2, 3]


def test_audio_on_the_int16_scale():
    assert list(int16_scale(np.array([0.0, 0.5, -1.0, 1.0]))) == [0, 16384, -32768, 32767]


def test_mfcc_has_100_columns_per_second_and_c0_is_the_frame_log_energy():
    pytest.importorskip("python_speech_features", reason="the judges extra is not installed; .ci/run installs it")
    rng = np.random.default_rng(0)
    audio = int16_scale(0.1 * rng.standard_normal(16000))
    features = mfcc_features(audio)
    assert features.shape == (13, 99)   # 1 + ceil((16000 - 400) / 160) frames of 25 ms every 10 ms
    emphasised = np.append(audio[0], audio[1:] - 0.97 * audio[:-1])
    frame = emphasised[10 * 160: 10 * 160 + 400]
    energy = np.sum(np.abs(np.fft.rfft(frame, 512)) ** 2) / 512
    assert features[0, 10] == pytest.approx(np.log(energy), rel=1e-9)


def test_crop_follows_the_reference_rows_and_columns():
    rows, cols = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    image = np.stack([rows, cols, np.zeros_like(rows)], axis=-1).astype(np.int32)
    # box (100, 60)-(180, 140): half-size 40, centre (140, 100)
    crop = crop_region(image, 40.0, 140.0, 100.0)
    assert crop.shape == (112, 112, 3)                       # rows y−s … y+1.8s, columns x−1.4s … x+1.4s
    assert tuple(crop[0, 0, :2]) == (60, 84) and tuple(crop[-1, -1, :2]) == (171, 195)
    corner = crop_region(image, 40.0, 20.0, 20.0)            # a face at the corner reaches into the padding
    assert (corner[:20, :, :] == PAD_VALUE).all() and (corner[:, :36, :] == PAD_VALUE).all()
    assert tuple(corner[20, 36, :2]) == (0, 0)


def test_tracks_bridge_gaps_and_drop_short_or_small_faces():
    cfg = SyncNetConfig(min_track=50, min_face_size=100)
    face = np.array([[100.0, 50.0, 220.0, 170.0]])
    detections = [face + i * 0.5 if not 30 <= i < 40 else np.zeros((0, 4)) for i in range(80)]
    detections[5] = np.concatenate([detections[5], [[300.0, 50.0, 420.0, 170.0]]])   # a second, fleeting face
    tracks = track_faces(detections, cfg)
    assert len(tracks) == 1
    assert list(tracks[0].frames) == list(range(80))
    assert tracks[0].boxes[35, 0] == pytest.approx(100 + 35 * 0.5)   # interpolated over the gap
    small = [np.array([[0.0, 0.0, 60.0, 60.0]]) for _ in range(80)]
    assert track_faces(small, cfg) == []
    assert track_faces(detections[:50], cfg) == []             # 50 frames is not more than min_track


def test_offset_search_finds_a_known_delay_with_the_reference_sign():
    generator = torch.Generator().manual_seed(0)
    embedding = torch.randn(100, 1024, generator=generator)
    delay = 3                                # audio comes 3 frames after the matching lips
    video = embedding[20:80]
    audio = embedding[20 - delay:80 - delay]
    mean = offset_distances(video, audio, 15).mean(dim=0)
    offset = 15 - int(torch.argmin(mean))
    assert offset == -delay                  # reference convention: positive = audio leads


def test_unavailable_without_weights_says_what_to_pass(tmp_path):
    assert "syncnet.checkpoint=/path/to/syncnet_v2.model" in create_metric("syncnet").unavailable()
    missing = create_metric("syncnet", checkpoint=str(tmp_path / "none.model")).unavailable()
    assert "does not exist" in missing


@pytest.mark.slow
def test_run_scores_lse_with_random_weights_next_to_the_sync_offset(random_checkpoint, tmp_path, capsys):
    pytest.importorskip("python_speech_features", reason="the judges extra is not installed; .ci/run installs it")
    out = tmp_path / "run"
    code = main(["run", "--suite", "smoke", "--limit", "1", "--languages", "en", "--models", "puppet",
                 "--metrics", "sync,syncnet", "--metric-option", f"syncnet.checkpoint={random_checkpoint}",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    clip = json.loads((out / "exports" / "results.json").read_text())["clips"][0]
    assert clip["syncnet.status"] == "ok", clip.get("syncnet.detail")
    assert clip["syncnet.lse_d"] > 0 and clip["syncnet.lse_c"] >= 0 and clip["syncnet.tracks"] >= 1
    assert -15 <= clip["syncnet.offset_frames"] <= 15
    assert clip["syncnet.offset_ms"] == pytest.approx(-40.0 * clip["syncnet.offset_frames"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["metrics"]["syncnet"]["weights"][0]["path"] == str(random_checkpoint)
