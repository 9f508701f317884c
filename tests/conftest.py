import os

import pytest

# Keep the converted Whisper checkpoint and other caches in one place for the whole test session.
os.environ.setdefault("MHEVAL_CACHE", os.path.expanduser("~/.cache/mheval"))


@pytest.fixture(scope="session")
def smoke_suite():
    from mheval.suites import load_suite

    return load_suite("smoke")
