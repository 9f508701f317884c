"""Word error rate of the clip's speech against the item's dialogue, transcribed by Whisper.

For zh, yue, ja and ko the unit is the character (so "WER" is CER there, as in the paper's public ports); the summary
is the corpus-level rate (edits over all clips / reference units over all clips), and the per-utterance mean is
kept as a field of its own. Every score records the ASR identity (weights sha256, engine, compute type, decoding),
the normaliser version and whether a window hit the decode-length cap, so a change of any of them is never
mistaken for a change of the generator.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mheval.asr.identity import ASRIdentity
from mheval.asr import ASRSettings, DecodingConfig, asr_identity, cuda_unavailable, load_asr
from mheval.asr.weights import WHISPER_LARGE_V3, hub_weights_for
from mheval.languages import language
from mheval.metrics import ClipContext, Metric, WeightFile, register
from mheval.metrics.normalize import NORMALIZER_VERSION, error_counts, normalize
from mheval.weights import WeightsUnavailable, resolve

DECODING_DEFAULTS = DecodingConfig()


@dataclass(frozen=True)
class WerDetail:
    """One clip's transcript, how it was normalised and aligned, and the ASR that wrote it."""

    transcript: str = ""
    language_used: str | None = None   # the decoder's language (Cantonese may be decoded as "zh")
    reference: str = ""
    reference_normalized: str = ""
    transcript_normalized: str = ""
    unit: str = "word"                 # word | character
    windows: list[dict] = field(default_factory=list)
    asr: ASRIdentity = field(default_factory=ASRIdentity)
    normalizer: int | None = None

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> "WerDetail":
        declared = {item.name for item in fields(cls)}
        values = {key: value for key, value in stored.items() if key in declared}
        return cls(**{**values, "asr": ASRIdentity.from_dict(stored.get("asr"))})


@dataclass(frozen=True)
class WerConfig:
    """`--metric-option wer.KEY=VALUE`; each one changes how the model is loaded or how it decodes."""
    asr: str = field(default="base", metadata={"help": "Whisper model: base (offline, PyPI), large-v3 (pinned on the "
                                                       "hub, fetched on first use), a CTranslate2 folder; with "
                                                       "engine=openai-whisper also a .pt file or a model name"})
    engine: str = field(default="faster-whisper", metadata={"help": "faster-whisper (CTranslate2) or openai-whisper"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    compute_type: str = field(default="default", metadata={
        "help": "default = int8 on CPU, float16 on CUDA (faster-whisper); float32 / float16 (openai-whisper)"})
    batch_size: int = field(default=0, metadata={
        "help": "windows decoded together by faster-whisper's batched pipeline; 0 = 8 on CUDA, 1 on CPU"})
    beam_size: int = field(default=DECODING_DEFAULTS.beam_size, metadata={"help": "beam width at temperature 0; 1 = greedy"})
    best_of: int = field(default=DECODING_DEFAULTS.best_of, metadata={"help": "samples per fallback temperature"})
    fallback_on_low_logprob: bool = field(default=DECODING_DEFAULTS.fallback_on_low_logprob, metadata={
        "help": "also re-decode windows with a low mean log-probability (Whisper's rule; ~6x slower on unclear speech)"})
    compression_ratio_threshold: float = field(default=DECODING_DEFAULTS.compression_ratio_threshold, metadata={
        "help": "gzip ratio above which a decode counts as repetitive and falls back to sampling"})
    logprob_threshold: float = field(default=DECODING_DEFAULTS.logprob_threshold, metadata={
        "help": "mean log-probability below which a window may be silent (with no_speech_threshold) or falls back"})
    no_speech_threshold: float = field(default=DECODING_DEFAULTS.no_speech_threshold, metadata={
        "help": "no-speech probability above which a low-confidence window is silent"})
    tokens_per_second: float = field(default=DECODING_DEFAULTS.tokens_per_second, metadata={
        "help": "decode-length cap per second of window audio (the cap hit is recorded per clip)"})

    def asr_settings(self) -> ASRSettings:
        decoding_fields = {f.name for f in fields(DecodingConfig)}
        decoding = DecodingConfig(**{k: v for k, v in asdict(self).items() if k in decoding_fields})
        return ASRSettings(model=self.asr, engine=self.engine, device=self.device, compute_type=self.compute_type,
                           batch_size=self.batch_size, decoding=decoding).resolved()


@register
class WordErrorRate(Metric):
    name = "wer"
    version = f"2+norm{NORMALIZER_VERSION}"
    inputs = ("audio", "reference_text")
    fields = ("wer", "errors", "substitutions", "deletions", "insertions", "reference_length", "cap_hit")
    headline = "wer"
    weight_field = "reference_length"
    lower_is_better = True
    unit = "%"
    percent = True
    language_table = True
    paper_column = "WER"
    detail_class = WerDetail
    description = "Whisper transcript vs the dialogue; character level for zh/yue/ja/ko (CER), corpus-level summary"
    options_class = WerConfig
    hub_weights = WHISPER_LARGE_V3   # what wer.asr=large-v3 fetches (faster-whisper)

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.asr_settings = self.options.asr_settings()  # refuses inert or unknown combinations now, not per clip
        self._asr = None

    @property
    def asr(self):
        if self._asr is None:
            self._asr = load_asr(self.asr_settings)
        return self._asr

    def config(self) -> dict[str, Any]:
        """The cache key: every option with its default resolved (compute type, batch size), the weights' sha256,
        the full decoding policy and the normaliser; a change of any rescores."""
        s = self.asr_settings
        return {**asdict(self.options), "compute_type": s.compute_type, "batch_size": s.batch_size,
                "asr_sha256": asr_identity(s)["sha256"], "decoding": asdict(s.decoding),
                "normalizer": NORMALIZER_VERSION}

    def weights(self) -> list[WeightFile]:
        identity = asr_identity(self.asr_settings)
        return [WeightFile(identity["path"], identity["sha256"])]

    def unavailable(self) -> str | None:
        s = self.asr_settings
        hub = hub_weights_for(s.model, s.engine)
        if hub is not None:
            try:
                resolve(hub)
            except WeightsUnavailable as error:
                return (f"Whisper {s.model} weights: {error}; or pass a CTranslate2 Whisper folder with "
                        f"--metric-option wer.asr=PATH")
        return cuda_unavailable(s)

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
            "cap_hit": int(transcript.info["cap_hit"]),
            "detail": {
                "transcript": transcript.text,
                "language_used": transcript.language_used,
                "reference": item.reference_text,
                "reference_normalized": normalize(item.reference_text, item.language),
                "transcript_normalized": normalize(transcript.text, item.language),
                "unit": "character" if language(item.language).character_level else "word",
                "windows": transcript.info["windows"],
                "asr": self.asr.identity,
                "normalizer": NORMALIZER_VERSION,
            },
        }
