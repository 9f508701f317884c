"""Throw-away metrics for tests that need a cheap real one instead of Whisper. Register them for a test only, with
`metric_registry.registered(...)` (the `audio_level` fixture in conftest.py does it for AudioLevel)."""
import numpy as np

from mheval.metrics import Metric


class AudioLevel(Metric):
    """The RMS level of a clip's audio: cheap, real, and not applicable to a clip without audio."""

    name = "audio-level-test"
    version = "1"
    inputs = ("audio",)
    fields = ("rms",)
    headline = "rms"
    lower_is_better = True
    calls = 0

    def score(self, clip):
        type(self).calls += 1
        return {"rms": float(np.sqrt(np.mean(clip.media.audio_16k ** 2)))}
