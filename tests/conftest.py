import os

import pytest

# Keep the converted Whisper checkpoint and other caches in one place for the whole test session.
os.environ.setdefault("MHEVAL_CACHE", os.path.expanduser("~/.cache/mheval"))


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
