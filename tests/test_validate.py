"""`mheval validate`: the self-test passes its bars on puppet clips; its perturbations are the size they claim."""
import numpy as np
import pytest

from mheval.cli import main
from mheval.validate import Check, ValidateConfig, Workspace, add_noise, check_noise, check_other_text, freeze, validate
from mheval.suites import load_suite


def test_noise_is_added_at_the_requested_snr():
    rng = np.random.default_rng(1)
    speech = np.concatenate([np.zeros(4000), 0.3 * np.sin(np.arange(16000) * 0.05)]).astype(np.float32)
    for snr in (20.0, 0.0, -5.0):
        noise = add_noise(speech, snr, seed=int(rng.integers(100))) - speech
        measured = 10 * np.log10(np.mean(speech[4000:] ** 2) / np.mean(noise ** 2))
        assert measured == pytest.approx(snr, abs=0.2)


def test_freeze_repeats_the_first_frame():
    frames = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    frozen = freeze(frames)
    assert frozen.shape == frames.shape and (frozen == frames[0]).all()


def test_validate_without_asr_passes_all_bars(tmp_path):
    config = ValidateConfig(items=1, shifts=(-10, -3, 0, 4, 10), wer=False)
    checks = validate(config, tmp_path)
    groups = {check.group for check in checks}
    assert {"sync shift", "real-face sync", "re-encode", "blur", "frozen", "frozen face", "timestamps",
            "missing stream", "one frame", "repeat", "identity drift", "speech noise", "other voice"} <= groups
    assert all(isinstance(check, Check) and check.passed for check in checks), [c for c in checks if not c.passed]


def test_cli_prints_the_table_and_exits_zero(capsys):
    assert main(["validate", "--no-wer", "--items", "1", "--shift-step", "10"]) == 0
    out = capsys.readouterr().out
    assert "injected vs measured" in out and "checks pass" in out and "FAIL" not in out


def test_failing_bar_gives_exit_code_one(monkeypatch):
    monkeypatch.setattr("mheval.validate.validate",
                        lambda config, directory, progress: [Check("sync shift", "x", "y", "z", False)])
    assert main(["validate", "--no-wer"]) == 1


@pytest.mark.slow
def test_wer_rises_with_noise_and_is_high_against_another_items_text(tmp_path):
    """Needs Whisper base (minutes on CPU)."""
    suite_items = list(load_suite("smoke").items)
    work = Workspace(tmp_path, ValidateConfig())
    noise = check_noise(work, suite_items)
    other = check_other_text(work, suite_items, suite_items)
    assert all(check.passed for check in noise + other), noise + other

