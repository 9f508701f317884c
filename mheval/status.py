"""The status of a clip or of one metric's score of a clip: one enum for the store, the runner and every reader."""
from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Stored as its value; a `StrEnum` compares equal to that text, so tables of strings filter by it directly."""

    OK = "ok"
    FAILED = "failed"                  # the clip did not generate, or the metric raised on it
    NOT_APPLICABLE = "not_applicable"  # nothing to measure (no face, no speech…): a reason, never a number
    STALE = "stale"                    # a clip made under another generation key, not (yet) regenerated
    MISSING = "missing"                # no score stored for this clip and metric key
