"""Making a study from a run, and deciding what each rater sees next.

A pair is one prompt's clips from two models. Every clip is re-encoded once into the study's media/ under a random
name with mheval's own mp4 writer: container tags that could name a model or a file are gone, and the catch-trial
copies (audio shifted 500 ms, frozen video) come out of the same encoder as the originals, and at the end every
file is padded to one length, so nothing but their content sets them apart. Each rater's queue is planned at their first login: real pairs (balanced over prompts,
languages and model pairs by how often each pair has been shown), about one catch trial in ten, and a few repeats of
earlier trials with the sides swapped, at random places. A pair's side order alternates between its showings,
starting from a random side, so each pair is seen in both orders across raters; the order is logged per trial.
With `adaptive`, real slots are filled only when reached, from the model pair whose win share is least certain;
the rule and its inputs are logged per trial. The choice depends only on earlier votes, so the Bradley–Terry
likelihood (and each matchup's own shares) stay valid.
"""
from __future__ import annotations

import itertools
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mheval.languages import LANGUAGES
from mheval.review.storage import CRITERION_LABELS, DATABASE, MEDIA, StudyError, StudyStore, random_name
from mheval.results import RunResults
from mheval.status import Status



@dataclass(frozen=True)
class StudyConfig:
    models: tuple[str, ...]
    criteria: tuple[str, ...] = tuple(CRITERION_LABELS)
    seed: int = 0                        # pairing, side orders, queues
    catch_rate: float = 0.1              # share of each rater's trials that are catch trials
    repeat_rate: float = 0.05            # real trials shown again later with the sides swapped, per real trial
    repeat_gap: int = 5                  # a repeat comes at least this many trials after the trial it repeats
    trials_per_rater: int | None = None  # real pairs per rater; None: every pair in the rater's languages
    adaptive: bool = False
    dwell_factor: float = 1.0            # a vote needs (server clock) ≥ factor × (left + right clip seconds)
    undo_seconds: float = 30.0
    shift_ms: float = 500.0              # the lip-sync catch trial's audio delay

    def __post_init__(self) -> None:
        if len(self.models) < 2 or len(set(self.models)) != len(self.models):
            raise ValueError(f"--models needs at least two different models, got {','.join(self.models)}")
        unknown = [c for c in self.criteria if c not in CRITERION_LABELS]
        if unknown or not self.criteria:
            raise ValueError(f"unknown criterion {', '.join(unknown) or '(none given)'}; expected some of "
                             f"{', '.join(CRITERION_LABELS)}")
        for name in ("catch_rate", "repeat_rate"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.trials_per_rater is not None and self.trials_per_rater < 1:
            raise ValueError(f"trials per rater must be at least 1, got {self.trials_per_rater}")
        if self.dwell_factor < 0 or self.undo_seconds < 0 or self.repeat_gap < 1:
            raise ValueError("dwell factor and undo seconds must be ≥ 0 and the repeat gap ≥ 1")

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> "StudyConfig":
        names = {f.name for f in fields(cls)}
        values = {key: value for key, value in settings.items() if key in names}
        return cls(**{**values, "models": tuple(values["models"]), "criteria": tuple(values["criteria"])})


# -- creating a study ------------------------------------------------------------------------------------------------

def create_study(run_dir: Path, config: StudyConfig, out: Path, progress: bool = True) -> StudyStore:
    """Build STUDY_DIR from the clips RUN_DIR holds for `config.models`; returns the open study. A failure (a clip
    that cannot be decoded, Ctrl-C) leaves no half-made study behind."""
    clips, items, manifest = run_clips(run_dir, config.models)
    if (out / DATABASE).exists():
        raise ValueError(f"{out}: already holds a study; choose another --out")
    fresh = not out.exists()
    store = StudyStore(out, create=True)
    try:
        _build(store, run_dir, config, clips, items, manifest, progress)
    except BaseException:
        store.close()
        if fresh:
            shutil.rmtree(out, ignore_errors=True)
        else:
            shutil.rmtree(out / MEDIA, ignore_errors=True)
            for path in out.glob(f"{DATABASE}*"):
                path.unlink()
        raise
    return store


def _build(store: StudyStore, run_dir: Path, config: StudyConfig, clips: pd.DataFrame, items: pd.DataFrame,
           manifest: dict[str, Any], progress: bool) -> None:
    from tqdm import tqdm

    from mheval.suites import split_prompt

    store.media_dir.mkdir(exist_ok=True)
    store.put_settings({**asdict(config), "run_dir": str(run_dir.resolve()), "suite": items.suite.iloc[0],
                        "run_seed": int(clips.seed.iloc[0]), "created": time.time(),
                        "suite_hash": manifest.get("suite", {}).get("hash")})
    rng = np.random.default_rng(config.seed)
    for item in items.itertuples():
        store.add_item(item.item_id, item.language, split_prompt(item.prompt)[0], item.reference_text)
    ids: dict[tuple[str, str], str] = {}
    for clip in tqdm(list(clips.itertuples()), desc="re-encoding clips", disable=not progress, leave=False):
        ids[clip.model, clip.item_id] = _add_media(store, run_dir / clip.path, clip.model, clip.item_id, "original",
                                                    clip.sha256)
    for item_id, group in clips.groupby("item_id", sort=True):
        present = [model for model in config.models if model in set(group.model)]
        for model_a, model_b in itertools.combinations(present, 2):
            store.add_pair(item_id, ids[model_a, item_id], ids[model_b, item_id], "real", _side(rng))
    for item_id, group in tqdm(list(clips.groupby("item_id", sort=True)), desc="catch trials",
                               disable=not progress, leave=False):
        source = group.iloc[int(rng.integers(len(group)))]
        _add_catch_pairs(store, config, run_dir / source.path, source.model, item_id, source.sha256,
                         ids[source.model, item_id], rng)
    store.even_out_media()


def run_clips(run_dir: Path, models: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The run's usable clips of `models` (one seed: the run's), the items with clips from ≥ 2 of them, and the
    run's manifest."""
    results = RunResults.load(run_dir, metrics=[])   # the latest invocation's clips, as the report and gate read them
    clips, items, manifest = results.clips, results.items, results.manifest
    known = sorted(set(clips.model))
    unknown = [model for model in models if model not in known]
    if unknown:
        raise ValueError(f"{run_dir}: no clips from model {', '.join(unknown)}; the run has {', '.join(known)}")
    clips = clips[clips.model.isin(models) & (clips.clip_status == Status.OK)]
    clips = clips[[isinstance(path, str) and (run_dir / path).is_file() for path in clips.path]]
    shared = clips.groupby("item_id").model.nunique()
    clips = clips[clips.item_id.isin(shared[shared >= 2].index)].reset_index(drop=True)
    if clips.empty:
        raise ValueError(f"{run_dir}: no prompt has clips from two of {', '.join(models)}; nothing to compare")
    return clips, items[items.item_id.isin(set(clips.item_id))].reset_index(drop=True), manifest


def _side(rng: np.random.Generator) -> str:
    return "a" if rng.random() < 0.5 else "b"


def _add_media(store: StudyStore, source: Path, model: str, item_id: str, variant: str, sha256: str,
               **transforms) -> str:
    from mheval.media import MediaError, probe
    from mheval.validate import rewrite_clip

    name = f"{random_name()}.mp4"
    target = store.media_dir / name
    try:
        rewrite_clip(source, target, **transforms)
        info = probe(target)
    except MediaError as err:
        raise ValueError(f"{source}: cannot be used in a study: {err.problem}") from err
    return store.add_clip(model, item_id, variant, str(source), sha256, max(info.video_seconds, info.audio_seconds),
                          name)


def _add_catch_pairs(store: StudyStore, config: StudyConfig, source: Path, model: str, item_id: str, sha256: str,
                     original: str, rng: np.random.Generator) -> None:
    """The catch trials of one prompt, each pair (original, degraded) with the answer it must get."""
    from mheval.adapters.puppet import shift_audio
    from mheval.validate import freeze

    if "lip_sync" in config.criteria:
        shifted = _add_media(store, source, model, item_id, "audio_shift", sha256,
                             audio=lambda audio, rate: shift_audio(audio, rate, config.shift_ms))
        store.add_pair(item_id, original, shifted, "catch", _side(rng), "audio_shift", {"lip_sync": "a"})
    if "overall" in config.criteria:
        frozen = _add_media(store, source, model, item_id, "frozen_video", sha256, frames=freeze)
        store.add_pair(item_id, original, frozen, "catch", _side(rng), "frozen_video", {"overall": "a"})
    store.add_pair(item_id, original, original, "catch", _side(rng), "identical",
                   {criterion: "tie" for criterion in config.criteria})


# -- raters' queues ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrialView:
    """What the app shows for one trial: no model, clip or file name."""

    trial_id: str
    position: int
    total: int
    language: str
    scene: str
    spoken: str
    seconds_to_watch: float


def validate_languages(codes: list[str]) -> list[str]:
    unknown = [code for code in codes if code not in LANGUAGES]
    if unknown:
        raise ValueError(f"unknown language {', '.join(unknown)}; expected some of {', '.join(LANGUAGES)}")
    return sorted(set(codes))


def _rater_pairs(store: StudyStore, languages: tuple[str, ...]) -> pd.DataFrame:
    """The study's pairs in the rater's languages (all when none declared), with language and model pair."""
    pairs = store.pairs().merge(store.items()[["item_id", "language"]], on="item_id")
    models = store.clips().set_index("clip_id").model
    pairs["matchup"] = [f"{models[a]}|{models[b]}" for a, b in zip(pairs.clip_a, pairs.clip_b)]
    return pairs[pairs.language.isin(languages)] if languages else pairs


def _sides(pair, times_shown: int) -> tuple[str, str]:
    """Left and right clip of a pair's next showing: its first side order, then alternating."""
    a_left = (pair.first_left == "a") == (times_shown % 2 == 0)
    return (pair.clip_a, pair.clip_b) if a_left else (pair.clip_b, pair.clip_a)


def plan_queue(store: StudyStore, rater_id: int) -> None:
    """Create the rater's queue at their first login (a no-op later)."""
    with store.transaction():
        if store.rater_trials(rater_id):
            return
        config = StudyConfig.from_settings(store.settings())
        rater = store.rater(rater_id)
        pairs = _rater_pairs(store, rater.languages)
        real, catch = pairs[pairs.kind == "real"], pairs[pairs.kind == "catch"]
        if real.empty:
            raise StudyError("This study has no clips in the languages you can judge. Tell the study's organiser.")
        rng = np.random.default_rng([config.seed, rater_id])
        n_real = min(len(real), config.trials_per_rater or len(real))
        n_catch = min(len(catch), round(n_real * config.catch_rate / (1 - config.catch_rate)))
        if config.catch_rate > 0 and len(catch):
            n_catch = max(1, n_catch)
        n_repeat = min(round(n_real * config.repeat_rate), max(0, n_real - config.repeat_gap))
        if config.repeat_rate > 0 and n_real > config.repeat_gap:
            n_repeat = max(1, n_repeat)
        slots = ["real"] * n_real + ["catch"] * n_catch
        rng.shuffle(slots)
        for _ in range(n_repeat):
            slots.insert(int(rng.integers(config.repeat_gap, len(slots) + 1)), "repeat")
        shown = store.times_shown()
        chosen = iter([] if config.adaptive else _balanced_pairs(real, shown, n_real, rng))
        catches = iter(catch.iloc[rng.permutation(len(catch))[:n_catch]].itertuples())
        rows = []
        for slot in slots:
            pair = next(chosen, None) if slot == "real" else next(catches) if slot == "catch" else None
            if pair is None:
                rows.append({"slot": slot})
                continue
            count = shown.get(pair.pair_id, 0) if slot == "real" else int(rng.integers(2))
            shown[pair.pair_id] = shown.get(pair.pair_id, 0) + 1
            left, right = _sides(pair, count)
            rows.append({"slot": slot, "pair_id": pair.pair_id, "left_clip": left, "right_clip": right,
                         "sampling": {"rule": "balanced" if slot == "real" else "catch", "times_shown_before": count}})
        store.add_trials(rater_id, rows)


def _balanced_pairs(real: pd.DataFrame, shown: dict[int, int], count: int, rng: np.random.Generator) -> list:
    """The `count` least-shown pairs, interleaving strata (language × model pair) so a partial queue is balanced."""
    frame = real.assign(shown=[shown.get(p, 0) for p in real.pair_id], noise=rng.random(len(real)))
    frame = frame.sort_values("noise")
    frame["rank"] = frame.groupby(["language", "matchup"]).cumcount()
    frame = frame.sort_values(["shown", "rank", "noise"]).head(count)
    return list(frame.iloc[rng.permutation(len(frame))].itertuples())


def next_trial(store: StudyStore, rater_id: int) -> TrialView | None:
    """The rater's current trial (first unsubmitted one, filled and marked as served now), or None when done."""
    plan_queue(store, rater_id)
    with store.transaction():
        while True:
            trials = store.rater_trials(rater_id)
            current = next((t for t in trials if t.submitted_at is None), None)
            if current is None:
                return None
            if current.pair_id is not None or _fill(store, rater_id, current, trials):
                break
            store.drop_trial(current.trial_id)
        store.mark_served(current.trial_id)
        current = store.trial(current.trial_id)
        total = len(store.rater_trials(rater_id))
    return _view(store, current, total)


def _view(store: StudyStore, trial, total: int) -> TrialView:
    row = store.query(
        "SELECT i.language, i.scene, i.spoken, l.seconds + r.seconds AS seconds FROM trials t "
        "JOIN pairs p ON p.pair_id = t.pair_id JOIN items i ON i.item_id = p.item_id "
        "JOIN clips l ON l.clip_id = t.left_clip JOIN clips r ON r.clip_id = t.right_clip WHERE t.trial_id = ?",
        (trial.trial_id,)).iloc[0]
    factor = store.settings()["dwell_factor"]
    return TrialView(trial.trial_id, trial.position, total, row.language, row.scene, row.spoken,
                     factor * float(row.seconds))


def _fill(store: StudyStore, rater_id: int, current, trials) -> bool:
    config = StudyConfig.from_settings(store.settings())
    rng = np.random.default_rng([config.seed, rater_id, current.position])
    if current.slot == "repeat":
        repeated = {t.repeat_of for t in trials if t.repeat_of}
        candidates = [t for t in trials if t.slot == "real" and t.pair_id is not None and t.submitted_at is not None
                      and t.position <= current.position - config.repeat_gap and t.trial_id not in repeated]
        if not candidates:
            return False
        original = candidates[int(rng.integers(len(candidates)))]
        store.fill_trial(current.trial_id, original.pair_id, original.right_clip, original.left_clip,
                         {"rule": "repeat, sides swapped", "of_position": original.position}, original.trial_id)
        return True
    rater = store.rater(rater_id)
    seen = {t.pair_id for t in trials if t.pair_id is not None}
    pairs = _rater_pairs(store, rater.languages)
    pairs = pairs[(pairs.kind == "real") & ~pairs.pair_id.isin(seen)]
    if pairs.empty:
        return False
    pair, widths = _least_certain_pair(store, pairs, config.criteria[0], rng)
    count = store.times_shown().get(pair.pair_id, 0)
    left, right = _sides(pair, count)
    store.fill_trial(current.trial_id, pair.pair_id, left, right,
                     {"rule": "adaptive: widest 95% interval of the win share", "criterion": config.criteria[0],
                      "widths": widths, "times_shown_before": count})
    return True


def _least_certain_pair(store: StudyStore, pairs: pd.DataFrame, criterion: str, rng: np.random.Generator):
    """Among `pairs`, one from the model pair whose decisive win share has the widest Wilson interval so far."""
    from mheval.review.stats import wilson

    votes = store.votes()
    votes = votes[(votes.kind == "real") & (votes.criterion == criterion) & (votes.verdict != "tie")]
    a_won = np.where(votes.verdict == "left", votes.left_clip == votes.clip_a, votes.right_clip == votes.clip_a)
    votes = votes.assign(matchup=votes.model_a + "|" + votes.model_b, a_won=a_won)
    widths = {}
    for matchup in sorted(set(pairs.matchup)):
        mine = votes[votes.matchup == matchup]
        low, high = wilson(int(mine.a_won.sum()), len(mine))
        widths[matchup] = round(high - low, 4) if len(mine) else 1.0
    widest = max(widths.values())
    candidates = pairs[pairs.matchup.isin([m for m, w in widths.items() if math.isclose(w, widest)])]
    shown = store.times_shown()
    least = min(shown.get(p, 0) for p in candidates.pair_id)
    candidates = candidates[[shown.get(p, 0) == least for p in candidates.pair_id]]
    return candidates.iloc[int(rng.integers(len(candidates)))], widths


def progress(store: StudyStore, rater_id: int) -> tuple[int, int]:
    """(submitted, planned) trials of a rater."""
    trials = store.rater_trials(rater_id)
    return sum(t.submitted_at is not None for t in trials), len(trials)


def study_summary(store: StudyStore) -> dict[str, Any]:
    """Counts for the command line after `create`: prompts, languages, pairs by kind, clips."""
    pairs = store.pairs()
    items = store.items()
    return {"prompts": len(items), "languages": sorted(set(items.language)),
            "real pairs": int((pairs.kind == "real").sum()), "catch pairs": int((pairs.kind == "catch").sum()),
            "media files": len(store.clips()), "settings": json.dumps({k: v for k, v in store.settings().items()
                                                                       if k in ("criteria", "adaptive")})}
