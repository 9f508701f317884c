"""Real runs shared by the gate and dashboard tests: made once per test session (Whisper is the slow part)."""
from __future__ import annotations

import shutil
from pathlib import Path

from mheval.runner import RunRequest, run
from mheval.store import RunStore
from mheval.validate import add_noise, rewrite_clip


def puppet_smoke_run(base: Path) -> Path:
    """`mheval run --suite smoke --models puppet` with every metric, in `base/puppet-smoke` (made once)."""
    directory = base / "puppet-smoke"
    if not (directory / "manifest.json").exists():
        run(RunRequest(suite="smoke", models=["puppet"], out=directory, progress=False))
    return directory


def puppet_ci_run(base: Path) -> Path:
    """What `.ci/run` gates: `mheval run --suite ci --models puppet --metrics wer`, in `base/puppet-ci` (made once)."""
    directory = base / "puppet-ci"
    if not (directory / "manifest.json").exists():
        run(RunRequest(suite="ci", models=["puppet"], metrics=["wer"], out=directory, progress=False))
    return directory


def export_clips(run_dir: Path, target: Path, degrade_language: str | None = None, snr_db: float = -6.0) -> Path:
    """The clips of a run as `<item id>.mp4` files for the `clips` adapter, one language's audio drowned in noise."""
    store = RunStore.open_existing(run_dir)
    clips = store.clips().merge(store.items()[["suite", "item_id", "language"]], on=["suite", "item_id"])
    store.close()
    target.mkdir(parents=True, exist_ok=True)
    for row in clips[clips.status == "ok"].itertuples():
        destination = target / f"{row.item_id}.mp4"
        if row.language == degrade_language:
            rewrite_clip(run_dir / row.path, destination, audio=lambda audio, rate: add_noise(audio, snr_db, seed=0))
        else:
            shutil.copyfile(run_dir / row.path, destination)
    return target


def degraded_german_run(base: Path) -> Path:
    """The puppet `ci` clips through the `clips` adapter with the German clips' audio drowned in noise (SNR −6 dB),
    scored with WER, labelled `puppet` like the original (made once, in `base/degraded-de`)."""
    directory = base / "degraded-de"
    if not (directory / "manifest.json").exists():
        clips = export_clips(puppet_ci_run(base), base / "degraded-de-clips", degrade_language="de", snr_db=-6.0)
        run(RunRequest(suite="ci", models=[f"puppet=clips:{clips}"], out=directory, metrics=["wer"], progress=False))
    return directory
