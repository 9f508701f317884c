"""What produced a set of transcripts, as a value: the ASR identity recorded with every WER score and baseline, and
whether two of them make comparable numbers.

Stored as a flat JSON object (`ASRIdentity.as_dict`, the layout `mheval.asr.asr_identity` writes and baselines keep).
Keys naming the weights mean another ASR model; the minor ones (where the code ran, library versions,
machine-specific paths) only warn; any other key that changes (decoding settings, compute type, keys added later)
means other transcripts, so a comparison is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WEIGHT_KEYS = ("name", "sha256", "converter_version")
DECODING_KEY = "decoding"
MINOR_KEYS = ("path", "device", "torch", "openai_whisper", "faster_whisper", "ctranslate2")


@dataclass(frozen=True)
class ASRIdentity:
    name: str | None = None
    sha256: str | None = None
    path: str | None = None
    engine: str | None = None
    compute_type: str | None = None
    device: str | None = None
    batch_size: int | None = None
    decoding: dict[str, Any] = field(default_factory=dict)
    other: dict[str, Any] = field(default_factory=dict)   # converter version, library versions, keys added later

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "ASRIdentity":
        values = dict(values or {})
        declared = {key: values.pop(key) for key in ("name", "sha256", "path", "engine", "compute_type", "device",
                                                     "batch_size", DECODING_KEY) if key in values}
        return cls(**declared, other=values)

    def as_dict(self) -> dict[str, Any]:
        values = {"name": self.name, "sha256": self.sha256, "path": self.path, "engine": self.engine,
                  "compute_type": self.compute_type, "device": self.device, "batch_size": self.batch_size,
                  DECODING_KEY: self.decoding}
        return {**{key: value for key, value in values.items() if value is not None and value != {}}, **self.other}

    @property
    def recorded(self) -> bool:
        return bool(self.as_dict())

    def describe(self) -> str:
        if not self.recorded:
            return "(not recorded)"
        return f"{self.name} (weights sha256 {str(self.sha256 or '?')[:12]}…)"

    def differing_keys(self, other: "ASRIdentity") -> set[str]:
        mine, theirs = self.as_dict(), other.as_dict()
        return {key for key in set(mine) | set(theirs) if mine.get(key) != theirs.get(key)}

    def incomparable_change(self, newer: "ASRIdentity") -> str | None:
        """Why transcripts made by `newer` cannot be compared with ours (another model, other decoding, other
        settings), or None when they can."""
        differing = self.differing_keys(newer)
        mine, theirs = self.as_dict(), newer.as_dict()
        if differing & set(WEIGHT_KEYS):
            return f"the ASR model changed: baseline {self.describe()}, run {newer.describe()}"
        if DECODING_KEY in differing:
            return "the ASR decoding settings changed: " + dict_changes(self.decoding, newer.decoding)
        settings = differing - set(MINOR_KEYS)
        if settings:
            return "the ASR settings changed: " + dict_changes({key: mine.get(key) for key in settings},
                                                               {key: theirs.get(key) for key in settings})
        return None

    def minor_differences(self, newer: "ASRIdentity") -> list[str]:
        """Differences that do not change transcripts (where it ran, library versions), for a warning."""
        mine, theirs = self.as_dict(), newer.as_dict()
        return [f"ASR {key} differs: baseline {mine.get(key)}, run {theirs.get(key)}"
                for key in sorted(self.differing_keys(newer))]


def dict_changes(old: dict, new: dict) -> str:
    keys = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
    return ", ".join(f"{key}: {old.get(key)!r} → {new.get(key)!r}" for key in keys) or "(details not recorded)"
