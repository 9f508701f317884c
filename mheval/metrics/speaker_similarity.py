"""`speaker_similarity`: is it the same voice? Cosine similarity of Resemblyzer speaker embeddings.

Resemblyzer's `VoiceEncoder` (resemblyzer 0.1.4, Apache-2.0; `pretrained.pt` ships in the wheel: a 3-layer LSTM
speaker encoder trained with the GE2E loss, Wan et al. 2018) turns an utterance into a 256-d unit vector; two
utterances of one speaker point the same way. Each side is the speech only (`mheval.speech`, Silero VAD, pauses
left out), prepared by Resemblyzer's own `preprocess_wav` (volume normalised to −30 dBFS, long silences trimmed).

- With a `reference_audio` on the item (the a2v case: the generator was given a voice to keep): the clip's speech
  against the reference's speech (`against_reference` 1).
- Without one: the consistency of the voice within the clip, the first half of its speech against the second half
  (`against_reference` 0); each half needs `min_half_seconds`, else not applicable (too short to split).
The detail says which was used and what was compared. Higher = more alike (cosine, at most 1; the embeddings are
non-negative, so unrelated voices still score about 0.4–0.7). Measured on pocketsphinx-testdata recordings (tests/
test_speaker_similarity.py): one LibriVox reader against himself 0.75–0.93, against other men 0.35–0.72.

Not applicable: no audio track, clip speech below `min_speech_seconds`, and reference audio with less speech than
that (the reason names the file). Summaries mix both cases when a suite does; `against_reference` tells them apart.
"""
from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mheval.files import sha256_file_cached
from mheval.media import ASR_SAMPLE_RATE, read_audio
from mheval.metrics import ClipContext, Metric, NotApplicable, register
from mheval.speech import Speech, find_speech, vad_model_path


def encoder_weights() -> Path | None:
    """Resemblyzer's shipped `pretrained.pt`, without importing the package (torch), or None without it."""
    spec = importlib.util.find_spec("resemblyzer")
    return Path(spec.origin).parent / "pretrained.pt" if spec and spec.origin else None


@dataclass(frozen=True)
class SpeakerSimilarityOptions:
    """`--metric-option speaker_similarity.KEY=VALUE`."""

    min_speech_seconds: float = field(default=1.0, metadata={
        "help": "voice activity (Silero VAD) the clip, and a reference audio, need, else not applicable"})
    min_half_seconds: float = field(default=1.0, metadata={
        "help": "speech each half of the clip needs for the within-clip comparison (no reference audio)"})


@dataclass(frozen=True)
class SpeakerSimilarityDetail:
    """Which comparison was made and on how much speech (segments in seconds from each audio's first sample)."""

    compared: str = ""                      # "reference audio" | "first vs second half of the clip's speech"
    reference_audio: str | None = None
    clip_segments: list[list[float]] = field(default_factory=list)
    reference_segments: list[list[float]] = field(default_factory=list)


def resemblyzer():
    """The resemblyzer package, imported without the warnings its dependencies print at every start (webrtcvad on
    the pkg_resources API, its own import of a deprecated scipy namespace): the user can do nothing about either."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", message="Please import `binary_dilation`", category=DeprecationWarning)
        import resemblyzer as package
    return package


@register
class SpeakerSimilarity(Metric):
    name = "speaker_similarity"
    version = "1"
    inputs = ("audio", "reference_audio")
    fields = ("similarity", "against_reference", "speech_seconds", "reference_speech_seconds")
    headline = "similarity"
    unit = "cosine"
    detail_class = SpeakerSimilarityDetail
    description = ("Resemblyzer speaker-embedding cosine: clip vs the item's reference audio, else first vs second "
                   "half of the clip's speech; not applicable without speech")
    options_class = SpeakerSimilarityOptions

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._encoder = None
        self._references: dict[str, tuple[Speech, np.ndarray]] = {}   # by sha256: every model's clip meets it

    def weight_paths(self) -> list[Path]:
        weights = encoder_weights()
        return [weights, vad_model_path()] if weights else []

    def unavailable(self) -> str | None:
        weights = encoder_weights()
        if weights is None:
            return "resemblyzer is not installed (pip install resemblyzer==0.1.4)"
        return None if weights.is_file() else f"Resemblyzer weights missing: {weights}"

    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = resemblyzer().VoiceEncoder("cpu", verbose=False, weights_fpath=encoder_weights())
        return self._encoder

    def embedding(self, speech: np.ndarray, what: str) -> np.ndarray:
        """The unit-length speaker embedding of 16 kHz speech; `what` names it if Resemblyzer finds no voice."""
        prepared = resemblyzer().preprocess_wav(speech)
        if prepared.size == 0:
            raise NotApplicable(f"{what}: Resemblyzer's voice detector (webrtcvad) found no voice in the speech")
        return self.encoder.embed_utterance(prepared)

    def reference(self, path: Path) -> tuple[Speech, np.ndarray]:
        """The reference audio's speech and its embedding, computed once per file content."""
        key = sha256_file_cached(path)
        if key not in self._references:
            speech = find_speech(read_audio(path, ASR_SAMPLE_RATE))
            if speech.seconds < self.options.min_speech_seconds:
                raise NotApplicable(f"reference audio {path.name} has no speech ({speech.seconds:.2f} s of voice "
                                    f"activity, below min_speech_seconds {self.options.min_speech_seconds:g})")
            self._references[key] = speech, self.embedding(speech.samples(), f"reference audio {path.name}")
        return self._references[key]

    def score(self, clip: ClipContext) -> dict[str, Any]:
        cfg = self.options
        clip.media.require(audio=True)
        speech = find_speech(clip.media.audio_16k)
        if speech.seconds < cfg.min_speech_seconds:
            raise NotApplicable(f"no speech ({speech.seconds:.2f} s of voice activity, below min_speech_seconds "
                                f"{cfg.min_speech_seconds:g})")
        reference_path = clip.item.reference_audio
        if reference_path is not None:
            return self.against_reference(speech, Path(reference_path))
        first, second = speech.halves()
        half_seconds = min(len(first), len(second)) / ASR_SAMPLE_RATE
        if half_seconds < cfg.min_half_seconds:
            raise NotApplicable(f"speech too short to split: {speech.seconds:.2f} s, each half needs "
                                f"min_half_seconds {cfg.min_half_seconds:g} (no reference audio on the item)")
        return {
            "similarity": float(np.dot(self.embedding(first, "first half"), self.embedding(second, "second half"))),
            "against_reference": 0,
            "speech_seconds": speech.seconds,
            "reference_speech_seconds": None,
            "detail": {"compared": "first vs second half of the clip's speech",
                       "clip_segments": speech.spans_seconds()},
        }

    def against_reference(self, speech: Speech, reference_path: Path) -> dict[str, Any]:
        reference, reference_embedding = self.reference(reference_path)
        return {
            "similarity": float(np.dot(self.embedding(speech.samples(), "clip"), reference_embedding)),
            "against_reference": 1,
            "speech_seconds": speech.seconds,
            "reference_speech_seconds": reference.seconds,
            "detail": {"compared": "reference audio", "reference_audio": str(reference_path),
                       "clip_segments": speech.spans_seconds(), "reference_segments": reference.spans_seconds()},
        }
