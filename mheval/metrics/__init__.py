"""The metric registry: one class per metric, registered with `@register`.

Adding a metric means writing a subclass of `Metric`, decorating it with `@register`, and listing its module in
`METRIC_MODULES` or, without editing mheval, declaring it as an entry point of group `mheval.metrics` in the package
that ships it (see `mheval.registry`). The runner asks every metric for:

- `name`, `version`: bump `version` whenever the numbers a metric produces could change; it is part of the cache key.
- `inputs`: what it reads from a clip (documentation, and lets the dashboard explain a metric).
- `fields`: the numeric outputs per clip; `headline` is the one shown in summary tables.
- `options_class`: a frozen dataclass declaring the options (typed defaults, `metadata={"help": ...}`); the base
  class validates `--metric-option` values against it (a typo is an error naming the valid options) and keeps the
  typed instance as `self.options` (`self.given_options`: as given).
- `config()`: options that change results (part of the cache key); `weights()`: weight files with their sha256.
- `hub_weights`: the pinned Hugging Face hub weights a learned metric fetches on first use when no local path is
  given (`mheval.weights`; listed by `mheval weights`); `hub_folder()` finds or fetches them.
- `unavailable()`: None, or why the metric cannot run here and how to make it run (reported once per run).
- `score(clip)`: a dict of field values for one clip; raise `NotApplicable` when the clip has nothing to measure
  (no face, no speech), which is recorded as such, never as a number.
- `resources`, `worker_group`: what one scoring worker needs (Ray executor), and which metrics share a worker:
  metrics with the same group and resources are scored together, one decode of the clip for all of them; a metric
  that loads a large model of its own (a GPU judge) names its own group.
- presentation, read by every table (report, exports, dashboard, compare): `unit` (what the headline's number is
  in, as tables print it), `percent` (a fraction shown ×100 as %), `language_table` (the report gives the metric its
  own models × languages table, as for WER), `paper_column` (the paper's leaderboard column its headline fills;
  `field_paper_columns` for other fields that fill one, as the judge's text alignment).
- `detail_class`: a dataclass the stored `detail` of an ok score is read into by `mheval.results` (None: kept as
  the stored JSON value).
- `lower_is_better`, `ideal`: which way is better; a metric with an `ideal` value (sync's signed offset: 0) ranks
  by the distance to it (`ranking_values`), whatever the sign.
- `weight_field`: None to summarise clips by the mean of `headline`; a field name to weight each clip's headline by
  it (WER weights by reference length, which makes the summary the corpus-level ratio of edits to words).
- `summarize(rows, by_language)`: how the clips of one model × language become the summary's value, interval and notes; the
  default is the (weighted) mean of `headline` above; a metric overrides it when a mean would mislead (sync: the
  signed median over confident clips).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from mheval.files import sha256_file_cached
from mheval.media import ClipMedia, NotApplicable  # noqa: F401  (NotApplicable is raised by metrics and by ClipMedia)
from mheval.metrics.options import NoOptions, parse_options
from mheval.registry import Registry, config_hash
from mheval.resources import Resources
from mheval.status import Status
from mheval.stats import Estimate, bootstrap
from mheval.suites import SuiteItem
from mheval.weights import HubWeights, WeightsUnavailable, resolve

# The daVinci-MagiHuman paper's leaderboard columns, in its order; a metric names its own in `paper_column`.
HUB_RETRY_SECONDS = 60.0   # how long a metric remembers that its hub weights could not be had
PAPER_COLUMNS = ("visual quality", "text alignment", "physical consistency", "WER", "sync", "speed")

METRIC_MODULES = ("mheval.metrics.wer", "mheval.metrics.sync", "mheval.metrics.visual", "mheval.metrics.clip_score",
                  "mheval.metrics.speed", "mheval.metrics.syncnet", "mheval.metrics.videoscore2",
                  "mheval.metrics.identity", "mheval.metrics.speech_quality", "mheval.metrics.speaker_similarity")


@dataclass(frozen=True)
class WeightFile:
    path: str
    sha256: str

    @classmethod
    def of(cls, path: str | Path) -> "WeightFile":
        """A local weight file with its sha256 (hashed once per change of the file, see `mheval.files`)."""
        return cls(str(path), sha256_file_cached(path))


@dataclass(frozen=True)
class GroupSummary:
    """One model × language of a metric: the headline estimate with its bootstrap interval over prompts, and short
    notes a reader needs beside the number (e.g. "confident 7/8")."""

    estimate: Estimate
    notes: tuple[str, ...] = ()


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
    ideal: ClassVar[float | None] = None  # set: the value closest to it is best (sync's signed offset: 0 ms)
    weight_field: ClassVar[str | None] = None
    description: ClassVar[str] = ""
    unit: ClassVar[str] = ""
    percent: ClassVar[bool] = False
    language_table: ClassVar[bool] = False
    paper_column: ClassVar[str | None] = None
    field_paper_columns: ClassVar[dict[str, str]] = {}   # other fields that fill a paper column (judge: TA, PC)
    detail_class: ClassVar[type | None] = None
    resources: ClassVar[Resources] = Resources()
    worker_group: ClassVar[str] = "shared"
    options_class: ClassVar[type] = NoOptions
    hub_weights: ClassVar[HubWeights | None] = None

    def __init__(self, **options: Any):
        self.given_options = dict(options)   # as given (CLI strings): what re-creates this metric elsewhere
        self.options = parse_options(self.options_class, options, owner=f"metric {self.name}")
        self._weights: list[WeightFile] | None = None
        self._hub_folder: Path | None = None
        self._hub_failure: tuple[float, WeightsUnavailable] | None = None

    def config(self) -> dict[str, Any]:
        return dataclasses.asdict(self.options)

    def config_hash(self) -> str:
        return config_hash(self.config())

    def weight_paths(self) -> list[Path]:
        """The local files (model weights, detector data) whose bytes the scores depend on."""
        return []

    def weights(self) -> list[WeightFile]:
        """`weight_paths` with their sha256 (part of every score key), hashed once per metric instance."""
        if self._weights is None:
            self._weights = [WeightFile.of(path) for path in self.weight_paths()]
        return self._weights

    def hub_folder(self) -> Path:
        """The local snapshot of `hub_weights`, found or fetched once per instance under the environment's policy
        (`mheval.weights.WeightsPolicy`). Raises `WeightsUnavailable`; a failure is remembered for a minute, so the
        calls of one run (availability, config, weights) ask an unreachable hub once, and a later run asks again."""
        if self._hub_folder is not None:
            return self._hub_folder
        if self._hub_failure is not None and time.monotonic() - self._hub_failure[0] < HUB_RETRY_SECONDS:
            raise self._hub_failure[1]
        try:
            self._hub_folder = resolve(self.hub_weights)
        except WeightsUnavailable as error:
            self._hub_failure = (time.monotonic(), error)
            raise
        return self._hub_folder

    def unavailable(self) -> str | None:
        return None

    def score(self, clip: ClipContext) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def paper_fields(cls) -> dict[str, str]:
        """Paper leaderboard column → the field of this metric that fills it."""
        return {**({cls.paper_column: cls.headline} if cls.paper_column else {}),
                **{column: name for name, column in cls.field_paper_columns.items()}}

    @classmethod
    def read_detail(cls, stored: Any) -> Any:
        """The stored detail (JSON value) of an ok score as `detail_class` (fields the class does not declare are
        dropped, missing ones keep their defaults, so stores of earlier versions still read); without a
        `detail_class`, the JSON value itself."""
        if cls.detail_class is None or not isinstance(stored, dict):
            return stored
        reader = getattr(cls.detail_class, "from_stored", None)
        if reader is not None:
            return reader(stored)
        declared = {item.name for item in dataclasses.fields(cls.detail_class)}
        return cls.detail_class(**{key: value for key, value in stored.items() if key in declared})

    @classmethod
    def ranking_values(cls, values) -> np.ndarray:
        """Values turned into "lower is better" numbers, for ranking models and comparing clips: the distance to
        `ideal` when the metric has one (a signed offset of −150 ms is as bad as +150 ms), else the value itself or
        its negative."""
        values = np.asarray(values, dtype=np.float64)
        if cls.ideal is not None:
            return np.abs(values - cls.ideal)
        return values if cls.lower_is_better else -values

    @classmethod
    def direction(cls) -> str:
        """The arrow tables print beside the metric's name."""
        return f"→{cls.ideal:g}" if cls.ideal is not None else "↓" if cls.lower_is_better else "↑"

    @classmethod
    def scored_rows(cls, rows: pd.DataFrame) -> pd.DataFrame:
        """The rows of a results clip table (`<metric>.<field>` columns) whose score for this metric is ok."""
        status = rows.get(f"{cls.name}.status")
        return rows.iloc[:0] if status is None else rows[status == Status.OK]

    @classmethod
    def compared_rows(cls, rows: pd.DataFrame) -> pd.DataFrame:
        """The rows whose score counts when models are compared (verdicts, metric–human agreement): the ok ones;
        a metric whose own summary trusts only some of them (sync: the confident clips) narrows it."""
        return cls.scored_rows(rows)

    @classmethod
    def estimate(cls, rows: pd.DataFrame, field: str | None = None, weighted: bool = True,
                 by_language: bool = False) -> Estimate:
        """One field (default `headline`) over the scored clips in `rows`, bootstrapped over prompts. The headline of
        a metric with a `weight_field` is weighted (corpus-level WER) unless `weighted` is False (the per-utterance
        mean); `by_language`: the macro-average over languages, resampled within each language."""
        scored = cls.scored_rows(rows)
        column = f"{cls.name}.{field or cls.headline}"
        if scored.empty or column not in scored:
            return Estimate(float("nan"), float("nan"), float("nan"), 0)
        weights = None
        if weighted and cls.weight_field and field in (None, cls.headline):
            weights = pd.to_numeric(scored[f"{cls.name}.{cls.weight_field}"], errors="coerce").to_numpy()
        values = pd.to_numeric(scored[column], errors="coerce").to_numpy()
        strata = scored.language.to_numpy() if by_language else None
        return bootstrap(scored.item_id.to_numpy(), values, weights, strata=strata)

    @classmethod
    def summarize(cls, rows: pd.DataFrame, by_language: bool = False) -> GroupSummary:
        """The headline's (weighted) mean over the scored clips, bootstrapped over prompts; `by_language`: the
        macro-average over languages (the summary's `all` row)."""
        return GroupSummary(cls.estimate(rows, by_language=by_language))


_METRICS: Registry[Metric] = Registry("metric", METRIC_MODULES, entry_point_group="mheval.metrics")
metric_registry = _METRICS
register = _METRICS.register
metric_names = _METRICS.names
metric_class = _METRICS.get


def create_metric(name: str, **options: Any) -> Metric:
    return metric_class(name)(**options)
