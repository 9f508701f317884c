"""mheval from Python: evaluate a suite, score clips a training loop just wrote, compare models.

    import mheval

    results = mheval.evaluate("smoke", models=["puppet", "late=puppet"],
                              model_options={"late": {"shift_ms": 200}}, metrics=["wer", "sync"])
    results.summary                      # model × language × metric, with 95% intervals
    verdicts = mheval.compare(results)   # paired verdicts, one row per pair × metric × language

    scores = mheval.score({"en-kitchen-01": "step-1000/en-kitchen-01.mp4"}, suite="smoke", metrics=["wer"])

Every call runs the same runner as `mheval run` and returns the same typed `RunResults` the CLI reads. Metric
instances (and the models they load: Whisper, face and voice models) are kept for the life of the process, so a
training loop that calls `score` at every validation step loads each model once.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from mheval.results import RunResults
from mheval.suites import Suite, SuiteItem, load_suite, suite_from_items

# What an item given as a dict gets when it leaves them out: the multilingual suite's 5-s 256p clips.
ITEM_DEFAULTS = {"seconds": 5.0, "resolution": "448x256"}

# Metric instances of this process, keyed by name and options (see `mheval.runner.build_metrics`).
_METRICS: dict = {}

SuiteLike = str | Path | Suite | Iterable[Mapping[str, Any]] | Iterable[SuiteItem]


def _suite(suite: SuiteLike) -> Suite:
    if isinstance(suite, Suite):
        return suite
    if isinstance(suite, (str, Path)):
        return load_suite(suite)
    items = list(suite)
    if items and all(isinstance(item, SuiteItem) for item in items):
        return Suite("items", f"{len(items)} item(s) given in Python", Path.cwd() / "items.toml", tuple(items))
    if not all(isinstance(item, Mapping) for item in items):
        raise TypeError("suite: a suite name or path, a Suite, or a list of items (dicts with the fields of a suite "
                        "file's [[item]], or SuiteItem)")
    return suite_from_items([dict(item) for item in items], defaults=ITEM_DEFAULTS)


def _options(options: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, str]]:
    """Options as the command line gives them (text), so a value means the same typed from Python or typed there."""
    return {owner: {key: _text(value) for key, value in values.items()} for owner, values in (options or {}).items()}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value)


def evaluate(suite: SuiteLike = "multilingual", models: Iterable[str] = ("puppet",), *,
             clips: str | Path | None = None, metrics: Iterable[str] | None = None, out: str | Path | None = None,
             limit: int | None = None, languages: Iterable[str] | None = None, seed: int | None = None,
             model_options: Mapping[str, Mapping[str, Any]] | None = None,
             metric_options: Mapping[str, Mapping[str, Any]] | None = None, progress: bool = False) -> RunResults:
    """Generate (or take) a clip per item with each model, score every clip, store everything in `out`, and return
    the run's results — what `mheval run` does.

    suite: a suite name in prompts/, a .toml path, a `Suite`, or a list of items (dicts with a suite file's
        [[item]] fields: id, language, prompt, and optionally seconds (default 5), resolution (448x256),
        reference_image, reference_audio).
    models: model specs as `--models` takes them (`puppet`, `late=puppet`, `mine=clips:DIR`, `command:…`).
    clips: a folder of clips named `<item id>.mp4` to score instead of `models` (as model `clips`).
    metrics: metric names (default: every registered metric).
    out: the run directory (default runs/<suite name>); a second call with the same arguments computes only what is
        missing.
    model_options / metric_options: {label or metric: {option: value}}, validated like `--model-option` (a typo
        raises ValueError naming the valid options).
    """
    from mheval.runner import DEFAULT_SEED, RunRequest, default_out_dir, run

    loaded = _suite(suite)
    specs = [f"clips:{Path(clips).expanduser()}"] if clips is not None else list(models)
    outcome = run(RunRequest(
        suite=loaded, models=specs, out=Path(out) if out is not None else default_out_dir(loaded), limit=limit,
        languages=list(languages) if languages is not None else None,
        seed=DEFAULT_SEED if seed is None else seed, metrics=list(metrics) if metrics is not None else None,
        model_options=_options(model_options), metric_options=_options(metric_options), progress=progress,
        argv=["mheval.evaluate"], metric_cache=_METRICS))
    try:
        return RunResults.from_store(outcome.store, outcome.record)
    finally:
        outcome.store.close()


def score(clips: str | Path | Mapping[str, str | Path], suite: SuiteLike, *, metrics: Iterable[str] | None = None,
          run_dir: str | Path | None = None, model: str = "clips",
          metric_options: Mapping[str, Mapping[str, Any]] | None = None, progress: bool = False) -> RunResults:
    """Score clips that were just written, e.g. at a validation step of a training loop.

    clips: a folder of `<item id>.mp4` files, or {item id: clip path}; only those items of `suite` are scored.
    suite: the suite the clips were made for (its prompts and reference lines), as `evaluate` takes it.
    run_dir: where the scores are stored. Given, a clip scored before with the same metric settings is not scored
        again: the cache keys are those of `mheval run --models MODEL=clips:DIR --out RUN_DIR`. None: a temporary
        directory (the returned results stay readable; the files are removed at exit).
    model: the label the clips are stored under (e.g. "step-1000").
    Models are loaded once per process and reused by every later call.
    """
    loaded = _suite(suite)
    if run_dir is None:
        directory = Path(tempfile.mkdtemp(prefix="mheval-score-"))
        atexit.register(shutil.rmtree, directory, True)
    else:
        directory = Path(run_dir)
    folder, item_ids = _clip_folder(clips, directory / ".score-inputs" / model)
    known = {item.id for item in loaded.items}
    unknown = sorted(set(item_ids) - known)
    if unknown:
        raise ValueError(f"clips for item(s) {', '.join(unknown)} that suite {loaded.name!r} does not have")
    if not item_ids:
        raise ValueError(f"no clips to score in {folder}")
    from mheval.runner import DEFAULT_SEED, RunRequest, run

    outcome = run(RunRequest(
        suite=loaded, models=[f"{model}=clips:{folder}"], out=directory, item_ids=item_ids, seed=DEFAULT_SEED,
        metrics=list(metrics) if metrics is not None else None, metric_options=_options(metric_options),
        progress=progress, argv=["mheval.score"], metric_cache=_METRICS))
    try:
        return RunResults.from_store(outcome.store, outcome.record)
    finally:
        outcome.store.close()


def _clip_folder(clips: str | Path | Mapping[str, str | Path], links: Path) -> tuple[Path, list[str]]:
    """A folder the `clips` adapter reads (<item id>.<ext>), and the item ids it holds. A mapping becomes links in
    `links` (one stable place per run directory and model, so the cache keys of later calls match)."""
    from mheval.adapters.clips import CLIP_EXTENSIONS

    if isinstance(clips, Mapping):
        links.mkdir(parents=True, exist_ok=True)
        for old in links.iterdir():
            old.unlink()
        for item_id, path in clips.items():
            source = Path(path).expanduser().resolve()
            if not source.is_file():
                raise FileNotFoundError(f"clip for item {item_id!r}: {source} does not exist")
            (links / f"{item_id}{source.suffix.lower()}").symlink_to(source)
        return links, sorted(clips)
    folder = Path(clips).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of clips (give a folder or {{item id: path}})")
    return folder, sorted(path.stem for path in folder.iterdir() if path.suffix.lower() in CLIP_EXTENSIONS)


def compare(results: RunResults | str | Path, *, models: Iterable[str] | None = None, reference: str | None = None,
            metrics: Iterable[str] | None = None, fdr: bool = False, alpha: float = 0.05,
            min_prompts: int = 5) -> pd.DataFrame:
    """Paired verdicts between a run's models, one row per pair × metric × language (and the macro `all`):
    model_a, model_b, metric, field, language, n, a_value, b_value, delta (A − B), ci_low, ci_high, p, p_adjusted,
    verdict (a_better | b_better | no_difference | insufficient), prompts_needed — what `mheval compare` prints.
    p-values are adjusted over every row returned (Holm; `fdr=True`: Benjamini–Hochberg)."""
    from mheval.verdicts import VerdictSettings, verdicts

    if not isinstance(results, RunResults):
        results = RunResults.load(results)
    settings = VerdictSettings(models=tuple(models or ()), reference=reference, metrics=tuple(metrics or ()),
                               adjustment="fdr_bh" if fdr else "holm", alpha=alpha, min_prompts=min_prompts)
    return verdicts(results, settings).rows
