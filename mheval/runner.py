"""A run follows the data: suite → adapters → clips → metrics → store.

Generation and scoring are separate passes over the store, so an interrupted run picks up exactly where it stopped:
clips whose generation key is already stored are not regenerated, scores whose score key is stored are not
recomputed, and failures are recorded per clip without stopping the run. The keys are content hashes of everything
a clip or a score depends on (`generation_key`, `mheval.store.MetricKey.score_key`).
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mheval.adapters import Adapter, Coverage, ModelSpec, create_adapter, parse_model_spec
from mheval.manifest import build_manifest
from mheval.media import ClipMedia, MediaError, probe
from mheval.files import sha256_file
from mheval.metrics import ClipContext, Metric, NotApplicable, create_metric, metric_names
from mheval.store import ClipRecord, MetricKey, RunRecord, RunStore
from mheval.suites import Suite, SuiteItem, load_suite

DEFAULT_SEED = 42


@dataclass
class RunRequest:
    suite: str
    models: list[str]
    out: Path | None = None
    limit: int | None = None               # at most this many items per language
    languages: list[str] | None = None
    seed: int = DEFAULT_SEED
    metrics: list[str] | None = None       # None: every registered metric
    model_options: dict[str, dict[str, str]] = field(default_factory=dict)   # label -> options
    metric_options: dict[str, dict[str, str]] = field(default_factory=dict)  # metric -> options
    argv: list[str] = field(default_factory=list)
    progress: bool = True


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


def default_out_dir(suite: str) -> Path:
    return Path("runs") / Path(suite).stem


def select_items(suite: Suite, limit: int | None, languages: list[str] | None) -> list[SuiteItem]:
    chosen, per_language = [], {}
    for item in suite.items:
        if languages and item.language not in languages:
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


def build_metrics(names: list[str] | None, options: dict[str, dict[str, str]]) -> list[Metric]:
    names = names or metric_names()
    unknown = set(options) - set(names)
    if unknown:
        raise ValueError(f"--metric-option for metric(s) not in this run: {', '.join(sorted(unknown))}")
    return [create_metric(name, **options.get(name, {})) for name in names]


def generation_key(adapter: Adapter, item: SuiteItem, seed: int) -> str:
    """adapter config × item content × seed × what else the adapter says the clip depends on (`source_key`)."""
    parts = [adapter.config_hash(), item.content_hash(), str(seed)]
    source = adapter.source_key(item)
    return hashlib.sha256("|".join(parts + ([source] if source is not None else [])).encode()).hexdigest()[:24]


def run(request: RunRequest) -> RunOutcome:
    suite = load_suite(request.suite)
    items = select_items(suite, request.limit, request.languages)
    if not items:
        raise ValueError(f"suite {suite.name!r} has no items for languages {request.languages}")
    adapters = build_adapters(request.models, request.model_options)
    metrics = build_metrics(request.metrics, request.metric_options)
    unavailable = {metric.name: reason for metric in metrics if (reason := metric.unavailable())}
    store = RunStore(request.out or default_out_dir(request.suite))
    manifest = build_manifest(suite, adapters, metrics, unavailable, request.seed)
    planned = {label: {item.id: generation_key(adapter, item, request.seed) for item in items}
               for label, adapter in adapters.items()}
    scoring = [metric for metric in metrics if metric.name not in unavailable]
    record = store.begin_run(suite.name, suite.content_hash(), request.seed, planned,
                             [MetricKey.of(metric) for metric in scoring], request.argv, manifest)
    store.put_items(suite.name, items)
    outcome = RunOutcome(store, record.run_id, suite, items, adapters, metrics, unavailable,
                         coverage={label: adapter.coverage(items) for label, adapter in adapters.items()},
                         record=record)
    _generate_all(outcome, request)
    _score_all(outcome, request, scoring)
    outcome.record = store.finish_run(record)
    return outcome


def _generate_all(outcome: RunOutcome, request: RunRequest) -> None:
    work = [(label, adapter, item) for label, adapter in outcome.models.items() for item in outcome.items]
    for label, adapter, item in tqdm(work, desc="generate", unit="clip", disable=not request.progress,
                                     file=sys.stderr):
        key = outcome.record.clips[label][item.id]
        if _is_current(outcome.store, label, outcome.suite.name, item.id, request.seed, key):
            continue
        record = _generate_one(outcome.store, label, adapter, outcome.suite.name, item, request.seed, key)
        outcome.store.put_clip(record)
        outcome.generated += 1
        if record.status != "ok":
            outcome.failures += 1
            outcome.store.log_error(outcome.run_id, "generate", record.error or "", label, item.id)


def _is_current(store: RunStore, model: str, suite: str, item_id: str, seed: int, key: str) -> bool:
    record = store.get_clip(model, suite, item_id, seed)
    return (record is not None and record.generation_key == key and record.status == "ok"
            and (store.directory / record.path).exists())


def _generate_one(store: RunStore, label: str, adapter: Adapter, suite: str, item: SuiteItem, seed: int,
                  key: str) -> ClipRecord:
    final = store.clip_path(label, item.id, seed)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.stem}.partial.mp4")
    started = time.perf_counter()
    meta: dict[str, Any] = {}
    item_hash = item.content_hash()
    try:
        meta = adapter.generate(item, partial, seed) or {}
        meta["wall_seconds"] = time.perf_counter() - started
        meta["media"] = _check_clip(partial, shown=Path(meta.get("source", final)))
        digest = sha256_file(partial)
        partial.replace(final)
    except Exception as err:  # any adapter failure belongs to this clip only
        partial.unlink(missing_ok=True)
        message = f"{type(err).__name__}: {err}"
        return ClipRecord(label, suite, item.id, seed, key, item_hash, "failed", None, None, meta, message)
    relative = str(final.relative_to(store.directory))
    return ClipRecord(label, suite, item.id, seed, key, item_hash, "ok", relative, digest, meta, None)


def _check_clip(path: Path, shown: Path) -> dict[str, Any]:
    """The clip must decode and carry audio; errors name `shown` (the user's file), not our temporary copy."""
    try:
        info = probe(path)
    except MediaError as err:
        raise MediaError(shown, err.problem) from None
    if not info.has_audio:
        raise MediaError(shown, "clip has no audio stream")
    return info.__dict__


def _score_all(outcome: RunOutcome, request: RunRequest, metrics: list[Metric]) -> None:
    store = outcome.store
    keys = {key.name: key for key in outcome.record.metric_keys}
    clips = store.run_clips(outcome.record)
    clips = clips[(clips.status == "ok") & ~clips.stale]
    for row in tqdm(list(clips.itertuples()), desc="score", unit="clip", disable=not request.progress,
                    file=sys.stderr):
        missing = [m for m in metrics if not store.has_score(keys[m.name].score_key(row.sha256, row.item_hash))]
        if not missing:
            continue
        context = ClipContext(ClipMedia(store.directory / row.path), outcome.suite.item(row.item_id), row.model,
                              json.loads(row.meta))
        for metric in missing:
            _score_one(outcome, metric, keys[metric.name], context, row.sha256, row.item_hash)


def _score_one(outcome: RunOutcome, metric: Metric, key: MetricKey, context: ClipContext, clip_sha256: str,
               item_hash: str) -> None:
    try:
        fields = metric.score(context)
        status, detail = "ok", fields.pop("detail", None)
    except NotApplicable as reason:
        fields, status, detail = {}, "not_applicable", str(reason)
    except Exception as err:  # a metric failing on one clip must not stop the run
        fields, status, detail = {}, "failed", f"{type(err).__name__}: {err}"
        outcome.failures += 1
        outcome.store.log_error(outcome.run_id, f"metric:{metric.name}", detail, context.model, context.item.id)
        if not isinstance(err, MediaError):
            traceback.print_exc(file=sys.stderr)
    outcome.store.put_score(key, clip_sha256, item_hash, status, fields, detail)
    outcome.scored += 1
