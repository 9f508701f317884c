"""A run follows the data: suite → adapters → clips → metrics → store.

Generation and scoring are separate passes over the store, so an interrupted run picks up exactly where it stopped:
clips whose generation key is already stored are not regenerated, scores whose key is stored are not recomputed,
and failures are recorded per clip without stopping the run.
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
from mheval.metrics import ClipContext, Metric, NotApplicable, create_metric, metric_names, sha256_file
from mheval.store import ClipRecord, RunStore
from mheval.suites import Suite, SuiteItem, load_suite

DEFAULT_SEED = 42
DEFAULT_MAX_CLIP_SECONDS = 300.0


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
    max_clip_seconds: float = DEFAULT_MAX_CLIP_SECONDS   # a longer clip is refused (recorded as failed)


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
    return hashlib.sha256(f"{adapter.config_hash()}|{item.content_hash()}|{seed}".encode()).hexdigest()[:24]


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
    run_id = store.begin_run(suite.name, suite.content_hash(), list(adapters), request.argv, manifest)
    store.put_items(suite.name, items)
    outcome = RunOutcome(store, run_id, suite, items, adapters, metrics, unavailable,
                         coverage={label: adapter.coverage(items) for label, adapter in adapters.items()})
    _generate_all(outcome, request)
    _score_all(outcome, request, [metric for metric in metrics if metric.name not in unavailable])
    store.finish_run(run_id)
    return outcome


def _generate_all(outcome: RunOutcome, request: RunRequest) -> None:
    work = [(label, adapter, item) for label, adapter in outcome.models.items() for item in outcome.items]
    for label, adapter, item in tqdm(work, desc="generate", unit="clip", disable=not request.progress,
                                     file=sys.stderr):
        key = generation_key(adapter, item, request.seed)
        if _is_current(outcome.store, label, outcome.suite.name, item.id, request.seed, key):
            continue
        record = _generate_one(outcome.store, label, adapter, outcome.suite.name, item, request.seed, key,
                               request.max_clip_seconds)
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
                  key: str, max_clip_seconds: float = DEFAULT_MAX_CLIP_SECONDS) -> ClipRecord:
    final = store.clip_path(label, item.id, seed)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.stem}.partial.mp4")
    started = time.perf_counter()
    meta: dict[str, Any] = {}
    try:
        meta = adapter.generate(item, partial, seed) or {}
        meta["wall_seconds"] = time.perf_counter() - started
        meta["media"] = _check_clip(partial, shown=Path(meta.get("source", final)), max_seconds=max_clip_seconds)
        digest = sha256_file(partial)
        partial.replace(final)
    except Exception as err:  # any adapter failure belongs to this clip only
        partial.unlink(missing_ok=True)
        message = f"{type(err).__name__}: {err}"
        return ClipRecord(label, suite, item.id, seed, key, "failed", None, None, meta, message)
    relative = str(final.relative_to(store.directory))
    return ClipRecord(label, suite, item.id, seed, key, "ok", relative, digest, meta, None)


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


def _score_all(outcome: RunOutcome, request: RunRequest, metrics: list[Metric]) -> None:
    store = outcome.store
    clips = store.clips(outcome.suite.name, list(outcome.models))
    wanted = {item.id for item in outcome.items}
    clips = clips[(clips.status == "ok") & clips.item_id.isin(wanted) & (clips.seed == request.seed)]
    for row in tqdm(list(clips.itertuples()), desc="score", unit="clip", disable=not request.progress,
                    file=sys.stderr):
        missing = [m for m in metrics if not store.has_score(row.sha256, m.name, m.version, m.config_hash())]
        if not missing:
            continue
        context = ClipContext(ClipMedia(store.directory / row.path), outcome.suite.item(row.item_id), row.model,
                              json.loads(row.meta))
        for metric in missing:
            _score_one(outcome, metric, context, row.sha256)


def _score_one(outcome: RunOutcome, metric: Metric, context: ClipContext, clip_sha256: str) -> None:
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
    outcome.store.put_score(clip_sha256, metric.name, metric.version, metric.config_hash(), status, fields, detail)
    outcome.scored += 1
