"""The metric registry: one class per metric, registered with `@register`.

Adding a metric means writing a subclass of `Metric`, decorating it with `@register`, and listing its module in
`METRIC_MODULES` or, without editing mheval, declaring it as an entry point of group `mheval.metrics` in the package
that ships it (see `mheval.registry`). The runner asks every metric for:

- `name`, `version`: bump `version` whenever the numbers a metric produces could change; it is part of the cache key.
- `inputs`: what it reads from a clip (documentation, and lets the dashboard explain a metric).
- `fields`: the numeric outputs per clip; `headline` is the one shown in summary tables.
- `options_class`: a frozen dataclass declaring the options (typed defaults, `metadata={"help": ...}`); the base
  class validates `--metric-option` values against it (a typo is an error naming the valid options) and keeps the
  typed instance as `self.settings`.
- `config()`: options that change results (part of the cache key); `weights()`: weight files with their sha256.
- `unavailable()`: None, or why the metric cannot run here and how to make it run (reported once per run).
- `score(clip)`: a dict of field values for one clip; raise `NotApplicable` when the clip has nothing to measure
  (no face, no speech), which is recorded as such, never as a number.
- `weight_field`: None to summarise clips by the mean of `headline`; a field name to weight each clip's headline by
  it (WER weights by reference length, which makes the summary the corpus-level ratio of edits to words).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mheval.media import ClipMedia
from mheval.metrics.options import NoOptions, parse_options
from mheval.registry import Registry, config_hash
from mheval.suites import SuiteItem

METRIC_MODULES = ("mheval.metrics.wer", "mheval.metrics.sync", "mheval.metrics.visual", "mheval.metrics.clip_score",
                  "mheval.metrics.speed", "mheval.metrics.syncnet", "mheval.metrics.videoscore2")


class NotApplicable(Exception):
    """The clip has nothing this metric can measure (e.g. no face, no speech)."""


@dataclass(frozen=True)
class WeightFile:
    path: str
    sha256: str


@dataclass
class ClipContext:
    """Everything a metric may read about one generated clip."""

    media: ClipMedia
    item: SuiteItem
    model: str
    meta: dict[str, Any] = field(default_factory=dict)  # adapter metadata, e.g. {"timings": {"base": 1.2}}


class Metric:
    name: ClassVar[str]
    version: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]
    fields: ClassVar[tuple[str, ...]]
    headline: ClassVar[str]
    lower_is_better: ClassVar[bool] = False
    weight_field: ClassVar[str | None] = None
    description: ClassVar[str] = ""
    options_class: ClassVar[type] = NoOptions

    def __init__(self, **options: Any):
        self.options = options
        self.settings = parse_options(self.options_class, options, owner=f"metric {self.name}")

    def config(self) -> dict[str, Any]:
        return dict(self.options)

    def config_hash(self) -> str:
        return config_hash(self.config())

    def weights(self) -> list[WeightFile]:
        return []

    def unavailable(self) -> str | None:
        return None

    def score(self, clip: ClipContext) -> dict[str, Any]:
        raise NotImplementedError


_METRICS: Registry[Metric] = Registry("metric", METRIC_MODULES, entry_point_group="mheval.metrics")
metric_registry = _METRICS
register = _METRICS.register
metric_names = _METRICS.names
metric_class = _METRICS.get


def create_metric(name: str, **options: Any) -> Metric:
    return metric_class(name)(**options)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
