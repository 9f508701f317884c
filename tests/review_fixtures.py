"""Tiny runs and synthetic votes for the review tests.

`tiny_run` writes a run directory through the run store: real mp4 clips (64x48, under a second, a tone) from
several models on a few prompts of the multilingual suite, with stored scores for two automatic metrics (sync
confident on two clips of three). Model labels, adapter specs and the directory name are distinctive strings, so a
test can look for them in everything a browser received.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from mheval.media import write_mp4
from mheval.review.study import next_trial
from mheval.files import sha256_file
from mheval.store import ClipRecord, MetricKey, RunStore
from mheval.suites import load_suite

MODELS = ("zqmodelalpha", "zqmodelbeta", "zqmodelgamma")
ADAPTER_SPEC = "clips:/srv/zqsecretclips"
RUN_NAME = "zqrun-secret"
SEED = 42
FPS, WIDTH, HEIGHT, SAMPLE_RATE = 10, 64, 48, 16_000


def tiny_run(base: Path, models: tuple[str, ...] = MODELS, languages: tuple[str, ...] = ("en", "de"),
             per_language: int = 2, seconds: float = 0.6) -> Path:
    """A run directory `base/zqrun-secret` (made once) with a clip per model and prompt, and brisque/sync scores."""
    directory = base / RUN_NAME
    if (directory / "manifest.json").exists():
        return directory
    suite = load_suite("multilingual")
    items = [item for language in languages for item in [i for i in suite.items if i.language == language]
             [:per_language]]
    store = RunStore(directory)
    manifest = {"suite": {"name": suite.name, "hash": suite.content_hash()}, "seed": SEED,
                "models": {model: {"adapter": ADAPTER_SPEC} for model in models}}
    pairs = list(itertools.product(models, items))
    keys = [MetricKey("brisque", "test", "cfg", "weights"), MetricKey("sync", "test", "cfg", "weights")]
    clips = {model: {item.id: f"key-{index}" for index, (owner, item) in enumerate(pairs) if owner == model}
             for model in models}
    run = store.begin_run(suite.name, suite.content_hash(), SEED, clips, keys, ["test"], manifest)
    store.put_items(suite.name, items)
    rng = np.random.default_rng(0)
    frames_count = int(seconds * FPS)
    for index, (model, item) in enumerate(pairs):
        path = store.clip_path(model, item.id, SEED)
        level = 40 + 60 * index % 200
        frames = np.full((frames_count, HEIGHT, WIDTH, 3), level, np.uint8)
        frames[:, :, : WIDTH // 2] += np.arange(frames_count, dtype=np.uint8)[:, None, None, None] * 8
        tone = 0.2 * np.sin(2 * np.pi * (220 + 40 * index) * np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE)
        write_mp4(path, frames, FPS, tone.astype(np.float32), SAMPLE_RATE)
        sha = sha256_file(path)
        item_hash = item.content_hash()
        store.put_clip(ClipRecord(model, suite.name, item.id, SEED, f"key-{index}", item_hash, "ok",
                                  str(path.relative_to(directory)), sha, {}, None))
        store.put_score(keys[0], sha, item_hash, "ok", {"brisque": float(rng.uniform(10, 60))})
        offset = float(rng.uniform(-200, 200))
        store.put_score(keys[1], sha, item_hash, "ok", {"offset_ms": offset, "abs_offset_ms": abs(offset),
                                                        "confident": index % 3 != 0})   # sync trusts 2 of 3 clips
    store.finish_run(run)
    store.close()
    return directory


# -- synthetic votes ---------------------------------------------------------------------------------------------------

def synthetic_votes(matchups: dict[tuple[str, str], tuple[float, float, float]], per_matchup: int,
                    rng: np.random.Generator, prompts: int = 200, raters: int = 20,
                    criterion: str = "overall", language: str = "en") -> pd.DataFrame:
    """Votes shaped like `StudyStore.votes()`: per matchup (a, b) → (win, tie, loss) rates of a, sides random."""
    rows = []
    for (model_a, model_b), rates in matchups.items():
        results = rng.choice(3, size=per_matchup, p=np.array(rates) / sum(rates))
        a_left = rng.random(per_matchup) < 0.5
        for index, (result, left) in enumerate(zip(results, a_left)):
            item = f"item-{rng.integers(prompts)}"
            clip_a, clip_b = f"{model_a}@{item}", f"{model_b}@{item}"
            verdict = "tie" if result == 1 else "left" if (result == 0) == left else "right"
            rows.append(_vote(len(rows), f"{model_a}-{model_b}-{index}", criterion, verdict, item, language,
                              clip_a, clip_b, model_a, model_b, left, int(rng.integers(raters))))
    return pd.DataFrame(rows)


def _vote(index, trial_id, criterion, verdict, item, language, clip_a, clip_b, model_a, model_b, a_left, rater,
          kind="real", slot="real", expected=None, repeat_of=None, pair_id=None):
    return {"cast_at": float(index), "rater_id": rater, "rater": f"rater{rater}", "trial_id": trial_id,
            "position": index, "slot": slot, "repeat_of": repeat_of, "sampling": "{}", "criterion": criterion,
            "verdict": verdict, "pair_id": pair_id if pair_id is not None else f"{clip_a}|{clip_b}",
            "kind": kind, "catch_type": None, "expected": json.dumps(expected) if expected else None,
            "item_id": item, "language": language, "left_clip": clip_a if a_left else clip_b,
            "right_clip": clip_b if a_left else clip_a, "clip_a": clip_a, "clip_b": clip_b,
            "left_model": model_a if a_left else model_b, "right_model": model_b if a_left else model_a,
            "model_a": model_a, "model_b": model_b, "sha256_a": clip_a, "sha256_b": clip_b}


def simulate(store, rater_id: int, behaviour: str, rng: np.random.Generator) -> None:
    """Answer every trial: `always_left`, `random`, or `consistent` (knows the catch answers, prefers models in
    MODELS order, answers repeats the same way)."""
    clips = store.clips().set_index("clip_id")
    pairs = store.pairs().set_index("pair_id")
    criteria = store.settings()["criteria"]
    while (trial := next_trial(store, rater_id)) is not None:
        row = store.trial(trial.trial_id)
        pair = pairs.loc[row.pair_id]
        answers = {}
        for criterion in criteria:
            if behaviour == "always_left":
                answers[criterion] = "left"
            elif behaviour == "random":
                answers[criterion] = ("left", "tie", "right")[int(rng.integers(3))]
            else:
                expected = json.loads(pair.expected).get(criterion) if isinstance(pair.expected, str) else None
                if expected is None:
                    left_rank = MODELS.index(clips.model[row.left_clip])
                    right_rank = MODELS.index(clips.model[row.right_clip])
                    better = row.left_clip if left_rank < right_rank or (
                        left_rank == right_rank and clips.variant[row.left_clip] == "original") else row.right_clip
                    answers[criterion] = "left" if better == row.left_clip else "right"
                else:
                    winner = {"a": pair.clip_a, "b": pair.clip_b}.get(expected)
                    answers[criterion] = "tie" if winner is None else "left" if winner == row.left_clip else "right"
        store.submit_votes(rater_id, trial.trial_id, answers)
