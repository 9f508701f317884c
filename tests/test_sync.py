"""Weight-free AV sync on puppet clips, whose lips follow their own speech, with known audio shifts."""
import numpy as np
import pytest

from mheval.media import read_audio, write_mp4
from mheval.metrics import ClipContext, NotApplicable, create_metric
from mheval.metrics.sync import lagged_correlations, refine_peak, speech_envelope
from mheval.suites import load_suite
from mheval.validate import ValidateConfig, Workspace, check_reencode, freeze, rewrite_clip

SMOKE = load_suite("smoke").items
SHIFTS = range(-10, 11)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return Workspace(tmp_path_factory.mktemp("sync"), ValidateConfig())


def test_aac_round_trip_keeps_timing(tmp_path):
    """An impulse written at 0.5 s decodes at 0.5 s: PyAV trims the AAC encoder's priming samples."""
    rate = 16_000
    audio = np.zeros(2 * rate, np.float32)
    audio[rate // 2: rate // 2 + 80] = 0.8
    write_mp4(tmp_path / "impulse.mp4", np.zeros((50, 64, 64, 3), np.uint8), 25, audio, rate)
    decoded = read_audio(tmp_path / "impulse.mp4", rate)
    onset = int(np.argmax(np.abs(decoded) > 0.3))
    assert abs(onset - rate // 2) <= rate // 1000  # within 1 ms


def test_correlation_peak_sign_is_audio_lag():
    rng = np.random.default_rng(0)
    mouth = np.convolve(rng.normal(size=200), np.ones(4), mode="same")
    for delay in (-7, 0, 5):
        envelope = np.roll(mouth, delay)  # audio delayed by `delay` frames
        correlations = lagged_correlations(mouth, envelope, np.ones(200, bool), 15)
        assert refine_peak(correlations) - 15 == pytest.approx(delay, abs=0.2)


def test_envelope_window_is_centred_on_each_frame():
    rate, fps = 16_000, 25
    audio = np.zeros(rate, np.float32)
    audio[10 * rate // fps:] = 0.5  # sound starts exactly when frame 10 is shown
    envelope = speech_envelope(audio, rate, fps, 25, window_ms=40.0)
    assert envelope[9] < -60 and envelope[10] > -10


@pytest.mark.parametrize("shift", SHIFTS)
def test_recovers_every_shift_within_one_frame(work, shift):
    item = SMOKE[0]
    result = work.score("sync", work.puppet(item, shift), item)
    assert abs(result["offset_frames"] - shift) <= 1.0
    assert result["offset_ms"] == pytest.approx(result["offset_frames"] * 40.0)
    assert result["abs_offset_ms"] == abs(result["offset_ms"])
    assert result["confidence"] > 0.2


@pytest.mark.slow
@pytest.mark.parametrize("item", SMOKE[1:], ids=lambda item: item.id)
def test_recovers_every_shift_on_every_smoke_item(work, item):
    errors = [work.score("sync", work.puppet(item, shift), item)["offset_frames"] - shift for shift in SHIFTS]
    assert max(map(abs, errors)) <= 1.0


def test_in_sync_clip_correlates_best_at_zero(work):
    item = SMOKE[0]
    result = work.score("sync", work.puppet(item, 0), item)
    assert result["corr_at_zero"] == pytest.approx(result["corr_at_peak"], abs=0.02)
    assert result["corr_at_zero"] > 0.5


def test_shifted_audio_shows_mouth_moving_in_silence(work):
    item = SMOKE[0]
    in_sync = work.score("sync", work.puppet(item, 0), item)["silent_mouth_motion"]
    shifted = work.score("sync", work.puppet(item, 10), item)["silent_mouth_motion"]
    assert in_sync < 0.1 < shifted


def test_frozen_face_shows_no_articulation_and_low_confidence(work, tmp_path):
    item = SMOKE[0]
    clip = work.puppet(item)
    frozen = rewrite_clip(clip, tmp_path / "frozen.mp4", frames=freeze)
    moving, still = work.score("sync", clip, item), work.score("sync", frozen, item)
    assert still["speech_mouth_motion"] < 0.01 * moving["speech_mouth_motion"]
    assert still["confidence"] < 0.5 * moving["confidence"]


def test_reencoding_moves_offset_at_most_one_frame(work):
    checks = check_reencode(work, [SMOKE[0]])
    assert checks and all(check.passed for check in checks), checks


def test_no_face_is_not_applicable(work, tmp_path):
    item = SMOKE[0]
    faceless = rewrite_clip(work.puppet(item), tmp_path / "faceless.mp4", frames=lambda f: np.full_like(f, 90))
    with pytest.raises(NotApplicable, match="no face"):
        work.score("sync", faceless, item)


def test_no_speech_is_not_applicable(work, tmp_path):
    item = SMOKE[0]
    mute = rewrite_clip(work.puppet(item), tmp_path / "mute.mp4", audio=lambda a, rate: np.zeros_like(a))
    with pytest.raises(NotApplicable, match="no speech"):
        work.score("sync", mute, item)


def test_same_clip_scored_twice_is_identical(work):
    from mheval.media import ClipMedia

    item = SMOKE[0]
    clip = work.puppet(item, 3)
    first, second = (create_metric("sync").score(ClipContext(ClipMedia(clip), item, "puppet")) for _ in range(2))
    assert first == second


def test_options_are_typed_and_checked():
    metric = create_metric("sync", max_offset_frames="10")
    assert metric.config()["max_offset_frames"] == 10
    assert metric.config_hash() != create_metric("sync").config_hash()
    with pytest.raises(ValueError, match="unknown option"):
        create_metric("sync", window="3")
    assert metric.unavailable() is None and metric.weights()[0].sha256
