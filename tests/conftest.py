import os

import pytest

# Keep the converted Whisper checkpoint and other caches in one place for the whole test session.
os.environ.setdefault("MHEVAL_CACHE", os.path.expanduser("~/.cache/mheval"))
# Tests never reach the real Hugging Face hub (hub weights of CLIP, SyncNet, Whisper large-v3); tests/test_weights.py
# serves a hub of its own on 127.0.0.1 and turns this off where it fetches from it.
os.environ.setdefault("MHEVAL_OFFLINE", "1")


@pytest.fixture(scope="session")
def smoke_suite():
    from mheval.suites import load_suite

    return load_suite("smoke")


@pytest.fixture
def audio_level():
    """The AudioLevel test metric, registered for this test only; its name."""
    from metrics_for_tests import AudioLevel
    from mheval.metrics import metric_registry

    AudioLevel.calls = 0
    with metric_registry.registered(AudioLevel):
        yield AudioLevel.name
