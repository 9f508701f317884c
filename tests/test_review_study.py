"""Making a study from a run: pairs, opaque media, catch trials with known answers, balanced and adaptive queues."""
import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mheval.media import read_audio, read_video
from mheval.files import sha256_file
from mheval.review.storage import StudyError
from mheval.review.study import StudyConfig, create_study, next_trial
from review_fixtures import ADAPTER_SPEC, MODELS, RUN_NAME, tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("run"), per_language=3)


@pytest.fixture(scope="module")
def study(run_dir, tmp_path_factory):
    return create_study(run_dir, StudyConfig(models=MODELS, dwell_factor=0.0, catch_rate=0.2),
                        tmp_path_factory.mktemp("study") / "s", progress=False)


def submit_all(store, rater_id: int, answer: str = "tie") -> int:
    """Answer every trial of a rater with `answer`; returns how many trials."""
    count = 0
    while (trial := next_trial(store, rater_id)) is not None:
        store.submit_votes(rater_id, trial.trial_id, {c: answer for c in store.settings()["criteria"]})
        count += 1
    return count


def test_pairs_are_one_prompt_two_models_and_media_names_say_nothing(study, run_dir):
    pairs, clips = study.pairs(), study.clips().set_index("clip_id")
    real = pairs[pairs.kind == "real"]
    assert len(real) == 6 * 3   # 6 prompts × 3 model pairs
    for pair in real.itertuples():
        a, b = clips.loc[pair.clip_a], clips.loc[pair.clip_b]
        assert a.item_id == b.item_id == pair.item_id and MODELS.index(a.model) < MODELS.index(b.model)
    media = sorted(path.name for path in study.media_dir.iterdir())
    assert media == sorted(clips.media_name) and all(len(name) == 36 for name in media)
    secrets = [*MODELS, ADAPTER_SPEC, RUN_NAME, *(Path(p).name for p in clips.source_path)]
    for path in study.media_dir.iterdir():
        content = path.read_bytes()
        assert not any(secret.encode() in content for secret in secrets), path
    original = clips[clips.variant == "original"].iloc[0]
    assert sha256_file(study.media_dir / original.media_name) != original.source_sha256   # re-encoded


def test_catch_trials_carry_their_known_answers(study):
    pairs, clips = study.pairs(), study.clips().set_index("clip_id")
    catch = pairs[pairs.kind == "catch"]
    assert Counter(catch.catch_type) == {"audio_shift": 6, "frozen_video": 6, "identical": 6}
    shift = catch[catch.catch_type == "audio_shift"].iloc[0]
    assert json.loads(shift.expected) == {"lip_sync": "a"}
    original = read_audio(study.media_dir / clips.loc[shift.clip_a].media_name)
    shifted = read_audio(study.media_dir / clips.loc[shift.clip_b].media_name)
    onset = [int(np.argmax(np.abs(audio) > 0.05)) / 16_000 for audio in (original, shifted)]
    assert abs(onset[1] - onset[0] - 0.5) < 0.02                 # the same tone, starting 500 ms later
    frozen = catch[catch.catch_type == "frozen_video"].iloc[0]
    assert json.loads(frozen.expected) == {"overall": "a"}
    frames = read_video(study.media_dir / clips.loc[frozen.clip_b].media_name).astype(int)
    assert np.abs(frames - frames[:1]).max() <= 2
    identical = catch[catch.catch_type == "identical"].iloc[0]
    assert identical.clip_a == identical.clip_b
    assert set(json.loads(identical.expected).values()) == {"tie"}


def test_each_pair_is_shown_in_both_orders_across_raters_and_sides_are_logged(study):
    raters = [study.authenticate(study.invite(f"both{i}", [])).rater_id for i in range(2)]
    for rater_id in raters:
        submit_all(study, rater_id)
    trials = study.trials()
    trials = trials[trials.rater_id.isin(raters) & (trials.slot == "real")]
    orders = trials.groupby("pair_id").apply(lambda g: set(zip(g.left_clip, g.right_clip)), include_groups=False)
    assert len(orders) == 18 and all(len(sides) == 2 for sides in orders)   # both orders for every pair


def test_a_queue_has_about_one_catch_in_ten_and_swapped_repeats_after_a_gap(run_dir, tmp_path):
    store = create_study(run_dir, StudyConfig(models=MODELS, dwell_factor=0.0, repeat_rate=0.2), tmp_path / "s",
                         progress=False)
    rater = store.authenticate(store.invite("ana", [])).rater_id
    assert submit_all(store, rater) == 18 + 2 + 4
    trials = store.trials().set_index("trial_id")
    assert Counter(trials.slot) == {"real": 18, "catch": 2, "repeat": 4}
    for repeat in trials[trials.slot == "repeat"].itertuples():
        original = trials.loc[repeat.repeat_of]
        assert (repeat.left_clip, repeat.right_clip) == (original.right_clip, original.left_clip)
        assert repeat.pair_id == original.pair_id and repeat.position - original.position >= 5


def test_raters_get_only_their_languages_and_partial_queues_stay_balanced(run_dir, tmp_path):
    store = create_study(run_dir, StudyConfig(models=MODELS, dwell_factor=0.0, trials_per_rater=6, catch_rate=0.0,
                                              repeat_rate=0.0), tmp_path / "s", progress=False)
    german = store.authenticate(store.invite("de-only", ["de"])).rater_id
    submit_all(store, german)
    items = store.items().set_index("item_id").language
    pairs = store.pairs().set_index("pair_id")
    shown = store.trials()
    assert {items[pairs.item_id[p]] for p in shown.pair_id} == {"de"}
    for index in range(5):
        submit_all(store, store.authenticate(store.invite(f"any{index}", [])).rater_id)
    counts = store.trials().groupby("pair_id").size().reindex(pairs[pairs.kind == "real"].index, fill_value=0)
    assert counts.max() - counts.min() <= 1                       # 36 showings over 18 pairs: each twice


def test_adaptive_pairing_goes_where_the_win_share_is_least_certain_and_logs_why(run_dir, tmp_path):
    store = create_study(run_dir, StudyConfig(models=MODELS, dwell_factor=0.0, adaptive=True, catch_rate=0.0,
                                              repeat_rate=0.0, criteria=("overall",)), tmp_path / "s",
                         progress=False)
    first = store.authenticate(store.invite("first", [])).rater_id
    submit_all(store, first, "left")
    decided = store.votes().assign(matchup=lambda v: v.model_a + "|" + v.model_b)
    assert len(decided) == 18
    later = store.authenticate(store.invite("later", [])).rater_id
    trial = next_trial(store, later)
    sampling = json.loads(store.trials().set_index("trial_id").sampling[trial.trial_id])
    assert sampling["rule"].startswith("adaptive") and set(sampling["widths"]) == {
        f"{a}|{b}" for a, b in itertools.combinations(MODELS, 2)}
    chosen = store.query("SELECT p.pair_id FROM trials t JOIN pairs p USING (pair_id) WHERE trial_id = ?",
                         (trial.trial_id,)).pair_id[0]
    pair = store.pairs().set_index("pair_id").loc[chosen]
    models = store.clips().set_index("clip_id").model
    assert sampling["widths"][f"{models[pair.clip_a]}|{models[pair.clip_b]}"] == max(sampling["widths"].values())


def test_bad_input_is_named(run_dir, tmp_path, study):
    with pytest.raises(ValueError, match="no clips from model nobody; the run has zqmodelalpha"):
        create_study(run_dir, StudyConfig(models=(MODELS[0], "nobody")), tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="unknown criterion lipsync"):
        StudyConfig(models=MODELS, criteria=("overall", "lipsync"))
    with pytest.raises(ValueError, match="already holds a study"):
        create_study(run_dir, StudyConfig(models=MODELS), study.directory, progress=False)
    nobody = study.authenticate(study.invite("korean", ["ko"])).rater_id
    with pytest.raises(StudyError, match="no clips in the languages you can judge"):
        next_trial(study, nobody)


def test_a_damaged_clip_names_the_file_and_leaves_no_half_made_study(run_dir, tmp_path):
    import shutil

    damaged = tmp_path / "damaged-run"
    shutil.copytree(run_dir, damaged)
    clip = sorted((damaged / "clips" / MODELS[1]).iterdir())[0]
    clip.write_bytes(b"not an mp4")
    with pytest.raises(ValueError, match=f"{clip.name}: cannot be used in a study"):
        create_study(damaged, StudyConfig(models=MODELS), tmp_path / "study", progress=False)
    assert not (tmp_path / "study").exists()
