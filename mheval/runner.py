"""A run follows the data: suite → adapters → clips → metrics → store.

The driver decides from the store what is missing, so an interrupted run picks up exactly where it stopped: clips
whose generation key is already stored are not regenerated, scores whose score key is stored are not recomputed,
and failures are recorded per clip without stopping the run. The keys are content hashes of everything a clip or a
score depends on (`generation_key`, `mheval.store.MetricKey.score_key`). The units of work — one item × model → a clip
(`generate_clip`), one clip × metric group → scores (`score_clip`) — run on an executor (mheval.executors: in this
process, or on Ray); their results come back here, and this module alone writes the store. A clip's scoring is
submitted as soon as the clip is stored, so an executor that runs tasks side by side scores one model's clips while
another model still generates.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from mheval.adapters import Adapter, Coverage, ModelSpec, create_adapter, parse_model_spec
from mheval.executors import Done, Executor, ExecutorSettings, Pool, Task, create_executor
from mheval.manifest import build_manifest
from mheval.media import ClipMedia, MediaError, probe
from mheval.files import sha256_file
from mheval.metrics import ClipContext, Metric, NotApplicable, create_metric, metric_names
from mheval.progress import DEFAULT_INTERVAL, progress_bar
from mheval.status import Status
from mheval.store import ClipRecord, MetricKey, RunRecord, RunStore
from mheval.suites import Suite, SuiteItem, load_suite

DEFAULT_SEED = 42
DEFAULT_MAX_CLIP_SECONDS = 300.0


@dataclass
class RunRequest:
    suite: str | Suite                     # a name in prompts/, a .toml path, or a Suite already loaded
    models: list[str]
    out: Path | None = None
    limit: int | None = None               # at most this many items per language
    languages: list[str] | None = None
    item_ids: list[str] | None = None      # only these items of the suite
    seed: int = DEFAULT_SEED
    metrics: list[str] | None = None       # None: every registered metric
    model_options: dict[str, dict[str, str]] = field(default_factory=dict)   # label -> options
    metric_options: dict[str, dict[str, str]] = field(default_factory=dict)  # metric -> options
    argv: list[str] = field(default_factory=list)
    progress: bool = True
    progress_interval: float = DEFAULT_INTERVAL  # seconds between progress lines when stderr is not a terminal
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    max_clip_seconds: float = DEFAULT_MAX_CLIP_SECONDS   # a longer clip is refused (recorded as failed)
    metric_cache: dict | None = None       # metric instances kept across runs of one process (models stay loaded)


@dataclass
class RunOutcome:
    store: RunStore
    run_id: int
    suite: Suite
    items: list[SuiteItem]
    models: dict[str, Adapter]
    metrics: list[Metric]
    unavailable: dict[str, str]
    coverage: dict[str, Coverage]
    record: RunRecord
    generated: int = 0
    scored: int = 0
    failures: int = 0


def default_out_dir(suite: str | Suite) -> Path:
    return Path("runs") / (suite.name if isinstance(suite, Suite) else Path(suite).stem)


def select_items(suite: Suite, limit: int | None, languages: list[str] | None,
                 item_ids: list[str] | None = None) -> list[SuiteItem]:
    unknown = sorted(set(item_ids or ()) - {item.id for item in suite.items})
    if unknown:
        raise ValueError(f"suite {suite.name!r} has no item {', '.join(unknown)}")
    chosen, per_language = [], {}
    for item in suite.items:
        if languages and item.language not in languages or item_ids is not None and item.id not in item_ids:
            continue
        if limit is not None and per_language.get(item.language, 0) >= limit:
            continue
        per_language[item.language] = per_language.get(item.language, 0) + 1
        chosen.append(item)
    return chosen


def build_adapters(models: list[str], options: dict[str, dict[str, str]]) -> dict[str, Adapter]:
    specs: list[ModelSpec] = [parse_model_spec(text) for text in models]
    labels = [spec.label for spec in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"model labels must be unique, got {labels}; name them with LABEL=NAME:ARG")
    unknown = set(options) - set(labels)
    if unknown:
        raise ValueError(f"--model-option for unknown model label(s): {', '.join(sorted(unknown))}")
    return {spec.label: create_adapter(spec, options.get(spec.label)) for spec in specs}


def build_metrics(names: list[str] | None, options: dict[str, dict[str, str]],
                  cache: dict | None = None) -> list[Metric]:
    """The metrics `names` (default: all) with their options; from `cache` (filled here) when an instance with the
    same options was built before in this process, so its models stay loaded."""
    names = names or metric_names()
    unknown = set(options) - set(names)
    if unknown:
        raise ValueError(f"--metric-option for metric(s) not in this run: {', '.join(sorted(unknown))}")
    if cache is None:
        return [create_metric(name, **options.get(name, {})) for name in names]
    metrics = []
    for name in names:
        key = (name, tuple(sorted((k, str(v)) for k, v in options.get(name, {}).items())))
        if key not in cache:
            cache[key] = create_metric(name, **options.get(name, {}))
        metrics.append(cache[key])
    return metrics


def generation_key(adapter: Adapter, item: SuiteItem, seed: int) -> str:
    """adapter config × item content × seed × what else the adapter says the clip depends on (`source_key`)."""
    parts = [adapter.config_hash(), item.content_hash(), str(seed)]
    source = adapter.source_key(item)
    return hashlib.sha256("|".join(parts + ([source] if source is not None else [])).encode()).hexdigest()[:24]


def run(request: RunRequest) -> RunOutcome:
    suite = request.suite if isinstance(request.suite, Suite) else load_suite(request.suite)
    items = select_items(suite, request.limit, request.languages, request.item_ids)
    if not items:
        raise ValueError(f"suite {suite.name!r} has no items for languages {request.languages}")
    adapters = build_adapters(request.models, request.model_options)
    metrics = build_metrics(request.metrics, request.metric_options, request.metric_cache)
    unavailable = {metric.name: reason for metric in metrics if (reason := metric.unavailable())}
    scoring = [metric for metric in metrics if metric.name not in unavailable]
    pools, metric_pools = build_pools(request, adapters, scoring)
    store = RunStore(request.out or default_out_dir(request.suite))
    executor = create_executor(request.executor)
    try:
        executor.start(pools, store.directory)
        manifest = build_manifest(suite, adapters, metrics, unavailable, request.seed)
        manifest["executor"] = executor.describe()
        planned = {label: {item.id: generation_key(adapter, item, request.seed) for item in items}
                   for label, adapter in adapters.items()}
        record = store.begin_run(suite.name, suite.content_hash(), request.seed, planned,
                                 [MetricKey.of(metric) for metric in scoring], request.argv, manifest)
        store.put_items(suite.name, items)
        outcome = RunOutcome(store, record.run_id, suite, items, adapters, metrics, unavailable,
                             coverage={label: adapter.coverage(items) for label, adapter in adapters.items()},
                             record=record)
        _run_units(outcome, request, executor, {metric.name: metric for metric in scoring}, metric_pools)
        outcome.record = store.finish_run(record)
    finally:
        executor.close()
    return outcome


def build_pools(request: RunRequest, adapters: dict[str, Adapter],
                metrics: list[Metric]) -> tuple[list[Pool], dict[str, str]]:
    """One pool per model label; one per metric group (same `worker_group` and resources). Also metric -> pool."""
    settings = request.executor
    settings.check_names(set(adapters) | {metric.name for metric in metrics})
    specs = {spec.label: spec for spec in map(parse_model_spec, request.models)}
    pools = []
    for label, adapter in adapters.items():
        resources, replicas = settings.worker(label, adapter.resources)
        build = partial(create_adapter, specs[label], request.model_options.get(label))
        pools.append(Pool(f"generate:{label}", build, adapter, adapter_identity, resources, replicas))
    groups: dict[tuple, list[Metric]] = {}
    for metric in metrics:
        resources, replicas = settings.worker(metric.name, metric.resources)
        groups.setdefault((metric.worker_group, resources, replicas), []).append(metric)
    metric_pools = {}
    for (_, resources, replicas), members in groups.items():
        names = [metric.name for metric in members]
        name = "score:" + "+".join(names)
        build = partial(build_metrics, names, {n: request.metric_options[n] for n in names if n in request.metric_options})
        pools.append(Pool(name, build, members, metrics_identity, resources, replicas))
        metric_pools.update(dict.fromkeys(names, name))
    return pools, metric_pools


def adapter_identity(adapter: Adapter) -> str:
    return adapter.config_hash()


def metrics_identity(metrics: list[Metric]) -> str:
    return json.dumps([list(MetricKey.of(metric).__dict__.values()) for metric in metrics])


@dataclass(frozen=True)
class GenerationUnit:
    label: str
    item: SuiteItem
    key: str
    final: Path


@dataclass(frozen=True)
class ScoringUnit:
    label: str
    item: SuiteItem
    clip_sha256: str
    item_hash: str
    metrics: tuple[str, ...]


def _run_units(outcome: RunOutcome, request: RunRequest, executor: Executor, metrics: dict[str, Metric],
               metric_pools: dict[str, str]) -> None:
    store, suite = outcome.store, outcome.suite.name
    work = [(label, item) for label in outcome.models for item in outcome.items]
    bars = dict(enabled=request.progress, interval=request.progress_interval)
    generate_bar = progress_bar("generate", len(work), "clip", position=0, **bars)
    score_bar = progress_bar("score", len(work), "clip", position=1, **bars)
    unscored: dict[tuple[str, str], int] = {}  # (label, item id) -> scoring tasks still out
    keys = {key.name: key for key in outcome.record.metric_keys}

    def schedule_scoring(label: str, item: SuiteItem, record: ClipRecord) -> None:
        missing: dict[str, list[str]] = {}
        for metric in metrics.values():
            if not store.has_score(keys[metric.name].score_key(record.sha256, record.item_hash)):
                missing.setdefault(metric_pools[metric.name], []).append(metric.name)
        if not missing:
            score_bar.update(1)
            return
        unscored[(label, item.id)] = len(missing)
        for pool, names in missing.items():
            unit = ScoringUnit(label, item, record.sha256, record.item_hash, tuple(names))
            executor.submit(Task(pool, score_clip, (unit.metrics, item, label, record.meta, record.sha256), unit,
                                 file=store.directory / record.path, priority=1))

    for label, item in work:
        key = outcome.record.clips[label][item.id]
        if (current := _current_clip(store, label, suite, item.id, request.seed, key)) is not None:
            generate_bar.update(1)
            schedule_scoring(label, item, current)
            continue
        final = store.clip_path(label, item.id, request.seed)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial_clip = final.with_name(f".{final.stem}.partial.mp4")
        executor.submit(Task(f"generate:{label}", generate_clip, (item, request.seed, final, request.max_clip_seconds),
                             GenerationUnit(label, item, key, final), file=partial_clip, writes=True))

    for done in executor.completed():
        unit = done.task.tag
        if isinstance(unit, GenerationUnit):
            record = _store_clip(outcome, request.seed, done)
            generate_bar.update(1)
            if record.status == Status.OK:
                schedule_scoring(unit.label, unit.item, record)
            else:
                score_bar.total -= 1
        else:
            _store_scores(outcome, metrics, keys, done)
            unscored[(unit.label, unit.item.id)] -= 1
            if not unscored[(unit.label, unit.item.id)]:
                score_bar.update(1)
    generate_bar.close()
    score_bar.close()


def _store_clip(outcome: RunOutcome, seed: int, done: Done) -> ClipRecord:
    """Driver side of a generation unit: check the clip that arrived, move it into place, record it."""
    unit, partial_clip = done.task.tag, done.task.file
    result = done.value if done.error is None else GeneratedClip(Status.FAILED, {}, None, done.error)
    if result.status == Status.OK and (not partial_clip.exists() or sha256_file(partial_clip) != result.sha256):
        result = GeneratedClip(Status.FAILED, result.meta, None, f"the clip reached the run directory damaged or not "
                                                                 f"at all ({partial_clip}); the worker made sha256 "
                                                                 f"{result.sha256}")
    ok = result.status == Status.OK
    if ok:
        partial_clip.replace(unit.final)
    else:
        partial_clip.unlink(missing_ok=True)
    record = ClipRecord(model=unit.label, suite=outcome.suite.name, item_id=unit.item.id, seed=seed,
                        generation_key=unit.key, item_hash=unit.item.content_hash(), status=result.status,
                        path=str(unit.final.relative_to(outcome.store.directory)) if ok else None,
                        sha256=result.sha256 if ok else None, meta=result.meta, error=None if ok else result.error)
    outcome.store.put_clip(record)
    outcome.generated += 1
    if record.status != Status.OK:
        outcome.failures += 1
        outcome.store.log_error(outcome.run_id, "generate", record.error or "", unit.label, unit.item.id)
    return record


@dataclass
class GeneratedClip:
    status: Status                   # ok | failed
    meta: dict[str, Any]
    sha256: str | None
    error: str | None


def generate_clip(adapter: Adapter, item: SuiteItem, seed: int, shown: Path, max_clip_seconds: float, *,
                  file: Path) -> GeneratedClip:
    """Worker side of a generation unit: write the clip to `file`, check it (`_check_clip`), hash it. Errors
    name `shown` (the clip's place in the run directory) or the adapter's source file, not the temporary file."""
    started = time.perf_counter()
    meta: dict[str, Any] = {}
    try:
        meta = adapter.generate(item, file, seed) or {}
        meta["wall_seconds"] = time.perf_counter() - started
        meta["media"] = _check_clip(file, shown=Path(meta.get("source", shown)), max_seconds=max_clip_seconds)
        digest = sha256_file(file)
    except Exception as err:  # any adapter failure belongs to this clip only
        file.unlink(missing_ok=True)
        return GeneratedClip(Status.FAILED, meta, None, f"{type(err).__name__}: {err}")
    return GeneratedClip(Status.OK, meta, digest, None)


def _current_clip(store: RunStore, model: str, suite: str, item_id: str, seed: int, key: str) -> ClipRecord | None:
    """The stored clip when it was made with this generation key and is still on disk; else None (generate it)."""
    record = store.get_clip(model, suite, item_id, seed)
    current = (record is not None and record.generation_key == key and record.status == Status.OK
               and (store.directory / record.path).exists())
    return record if current else None


def _check_clip(path: Path, shown: Path, max_seconds: float = DEFAULT_MAX_CLIP_SECONDS) -> dict[str, Any]:
    """The clip must decode, carry video or audio (or both: the metrics that need a missing stream say "not
    applicable"), and play no longer than `max_seconds`; errors name `shown` (the user's file), not our temporary
    copy. Returns the media facts, with `has_video` / `has_audio`, for the clip's record."""
    try:
        info = probe(path)
    except MediaError as err:
        raise MediaError(shown, err.problem) from None
    seconds = max(info.video_seconds, info.audio_seconds)
    if seconds > max_seconds:
        raise MediaError(shown, f"clip plays {seconds:.1f} s, longer than the limit of {max_seconds:g} s "
                                "(raise it with --max-clip-seconds)")
    return info.__dict__


@dataclass
class ScoreRecord:
    metric: str
    status: Status                   # ok | failed | not_applicable
    fields: dict[str, Any]
    detail: Any


def score_clip(metrics: list[Metric], names: tuple[str, ...], item: SuiteItem, model: str, meta: dict[str, Any],
               clip_sha256: str, *, file: Path) -> list[ScoreRecord]:
    """Worker side of a scoring unit: the metrics `names` (of the worker's `metrics`) on the clip at `file`."""
    if sha256_file(file) != clip_sha256:
        raise MediaError(file, f"its sha256 is not the stored clip's ({clip_sha256}); the clip changed on disk")
    context = ClipContext(ClipMedia(file, ClipMedia.recorded_info(meta.get("media"))), item, model, meta)
    return [_score_one(metric, context) for metric in metrics if metric.name in names]


def _score_one(metric: Metric, context: ClipContext) -> ScoreRecord:
    try:
        fields = metric.score(context)
        status, detail = Status.OK, fields.pop("detail", None)
    except NotApplicable as reason:   # its code, when it has one, lets readers count that kind of reason
        fields, status = {}, Status.NOT_APPLICABLE
        detail = {"reason": str(reason), "code": reason.code} if reason.code else str(reason)
    except Exception as err:  # a metric failing on one clip must not stop the run
        fields, status, detail = {}, Status.FAILED, f"{type(err).__name__}: {err}"
        if not isinstance(err, MediaError):
            traceback.print_exc(file=sys.stderr)
    return ScoreRecord(metric.name, status, fields, detail)


def _store_scores(outcome: RunOutcome, metrics: dict[str, Metric], keys: dict[str, MetricKey], done: Done) -> None:
    """Driver side of a scoring unit: one score per metric; a unit that failed as a whole fails each of its metrics."""
    unit: ScoringUnit = done.task.tag
    records = done.value if done.error is None else [ScoreRecord(name, Status.FAILED, {}, done.error)
                                                     for name in unit.metrics]
    for record in records:
        metric = metrics[record.metric]
        if record.status == Status.FAILED:
            outcome.failures += 1
            outcome.store.log_error(outcome.run_id, f"metric:{metric.name}", record.detail, unit.label, unit.item.id)
        outcome.store.put_score(keys[metric.name], unit.clip_sha256, unit.item_hash, record.status, record.fields,
                                record.detail)
        outcome.scored += 1
