"""Word error rate of the clip's speech against the item's dialogue, transcribed by Whisper.

For zh, yue, ja and ko the unit is the character (so "WER" is CER there, as in the paper's public ports); the summary
is the corpus-level rate (edits over all clips / reference units over all clips), and the per-utterance mean is
kept as a field of its own. Every score records the ASR model, its weights' sha256 and the normaliser version, so a
change of either is never mistaken for a change of the generator.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mheval.languages import language
from mheval.metrics import ClipContext, Metric, WeightFile, register
from mheval.metrics.normalize import NORMALIZER_VERSION, error_counts, normalize


@dataclass(frozen=True)
class WerOptions:
    asr: str = field(default="base", metadata={"help": "Whisper model name (base, large-v3) or a local .pt path"})


@register
class WordErrorRate(Metric):
    name = "wer"
    version = f"1+norm{NORMALIZER_VERSION}"
    inputs = ("audio", "reference_text")
    fields = ("wer", "errors", "substitutions", "deletions", "insertions", "reference_length")
    headline = "wer"
    weight_field = "reference_length"
    lower_is_better = True
    description = "Whisper transcript vs the dialogue; character level for zh/yue/ja/ko (CER), corpus-level summary"
    options_class = WerOptions

    def __init__(self, asr: str = "base", **options: Any):
        super().__init__(asr=asr, **options)
        self._asr = None

    @property
    def asr(self):
        if self._asr is None:
            from mheval.asr import load_asr

            self._asr = load_asr(self.options["asr"])
        return self._asr

    def config(self) -> dict[str, Any]:
        """The cache key: ASR weights and decoding settings, and the normaliser; a change of any rescores."""
        from mheval.asr import DecodingConfig, weights_identity

        return {**super().config(), "asr_sha256": weights_identity(self.options["asr"])["sha256"],
                "decoding": asdict(DecodingConfig()), "normalizer": NORMALIZER_VERSION}

    def weights(self) -> list[WeightFile]:
        from mheval.asr import weights_identity

        identity = weights_identity(self.options["asr"])
        return [WeightFile(identity["path"], identity["sha256"])]

    def score(self, clip: ClipContext) -> dict[str, Any]:
        item = clip.item
        transcript = self.asr.transcribe(clip.media.audio_16k, item.language)
        counts = error_counts(item.reference_text, transcript.text, item.language)
        return {
            "wer": counts.rate,
            "errors": counts.errors,
            "substitutions": counts.substitutions,
            "deletions": counts.deletions,
            "insertions": counts.insertions,
            "reference_length": counts.reference_length,
            "detail": {
                "transcript": transcript.text,
                "language_used": transcript.language_used,
                "reference": item.reference_text,
                "reference_normalized": normalize(item.reference_text, item.language),
                "transcript_normalized": normalize(transcript.text, item.language),
                "unit": "character" if language(item.language).character_level else "word",
                "asr": self.asr.identity,
                "normalizer": NORMALIZER_VERSION,
            },
        }
