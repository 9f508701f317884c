"""The study database: tokens, atomic and idempotent votes under concurrency, the vote gate, undo, media grants."""
import multiprocessing
from pathlib import Path

import pytest

from mheval.review.storage import (SIGN_IN_FAILURES_ALLOWED, SIGN_IN_WINDOW_SECONDS, StudyError, StudyStore,
                                   VoteRefused)
from mheval.review.study import StudyConfig, create_study, next_trial
from review_fixtures import MODELS, tiny_run

ALL_TIE = {"overall": "tie"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("run"))


def make_study(run_dir: Path, directory: Path, **settings) -> StudyStore:
    config = StudyConfig(models=MODELS, **{"dwell_factor": 0.0, **settings})
    return create_study(run_dir, config, directory, progress=False)


def test_tokens_are_stored_as_hashes_and_can_be_revoked_and_replaced(run_dir, tmp_path):
    store = make_study(run_dir, tmp_path / "study")
    token = store.invite("ana", ["en"])
    assert store.authenticate(token).name == "ana"
    assert token.encode() not in (tmp_path / "study" / "study.sqlite").read_bytes() + (
        tmp_path / "study" / "study.sqlite-wal").read_bytes()
    with pytest.raises(StudyError, match="not valid"):
        store.authenticate(token[:-1] + ("x" if token[-1] != "x" else "y"))
    with pytest.raises(StudyError, match="already invited"):
        store.invite("ana", [])
    store.revoke("ana")
    with pytest.raises(StudyError, match="revoked"):
        store.authenticate(token)
    fresh = store.invite("ana", ["en"], new_token=True)
    assert store.authenticate(fresh).name == "ana"
    with pytest.raises(StudyError, match="not valid"):
        store.authenticate(token)


def test_a_client_that_keeps_entering_invalid_tokens_is_locked_out_for_a_while(run_dir, tmp_path):
    store = make_study(run_dir, tmp_path / "study")
    token = store.invite("ana", ["en"])
    start = 1_000_000.0
    for attempt in range(SIGN_IN_FAILURES_ALLOWED):
        with pytest.raises(StudyError, match="not valid"):
            store.authenticate(f"guess-{attempt}", client="203.0.113.9", now=start + attempt)
    # now even the right token is refused from that address, so its answers tell a guesser nothing
    with pytest.raises(StudyError, match="Too many invalid tokens.*in 9 minutes"):
        store.authenticate(token, client="203.0.113.9", now=start + 60)
    assert store.authenticate(token, client="198.51.100.7", now=start + 60).name == "ana"
    # the lock lifts as the failures age out of the window, for a fresh connection too (it lives in the database)
    reopened = StudyStore(tmp_path / "study")
    with pytest.raises(StudyError, match="Too many"):
        reopened.authenticate(token, client="203.0.113.9", now=start + SIGN_IN_WINDOW_SECONDS - 1)
    assert reopened.authenticate(token, client="203.0.113.9", now=start + SIGN_IN_WINDOW_SECONDS + 1).name == "ana"


def test_a_few_typos_do_not_lock_a_rater_out(run_dir, tmp_path):
    store = make_study(run_dir, tmp_path / "study")
    token = store.invite("ana", ["en"])
    for typo in range(SIGN_IN_FAILURES_ALLOWED - 1):
        with pytest.raises(StudyError, match="not valid"):
            store.authenticate(token + str(typo), client="192.0.2.1", now=100.0 + typo)
    assert store.authenticate(token, client="192.0.2.1", now=120.0).name == "ana"


def test_a_vote_needs_both_clips_played_through_on_the_server_clock(run_dir, tmp_path):
    store = make_study(run_dir, tmp_path / "study", dwell_factor=1.0, criteria=("overall",))
    rater = store.authenticate(store.invite("ana", []))
    trial = next_trial(store, rater.rater_id)
    served = store.trial(trial.trial_id).served_at
    with pytest.raises(VoteRefused, match="Play both clips to the end") as refusal:
        store.submit_votes(rater.rater_id, trial.trial_id, ALL_TIE, now=served + trial.seconds_to_watch - 0.1)
    assert refusal.value.seconds_left == pytest.approx(0.1, abs=1e-6)
    assert store.vote_count() == 0
    assert store.submit_votes(rater.rater_id, trial.trial_id, ALL_TIE, now=served + trial.seconds_to_watch)
    assert trial.seconds_to_watch == pytest.approx(2 * 0.6, abs=0.15)   # two 0.6 s clips, one after the other


def test_incomplete_answers_other_raters_trials_and_revoked_raters_are_refused(run_dir, tmp_path):
    store = make_study(run_dir, tmp_path / "study")
    ana = store.authenticate(store.invite("ana", []))
    ben = store.authenticate(store.invite("ben", []))
    trial = next_trial(store, ana.rater_id)
    with pytest.raises(VoteRefused, match="Answer every question"):
        store.submit_votes(ana.rater_id, trial.trial_id, {"overall": "left"})
    with pytest.raises(VoteRefused, match="not yours"):
        store.submit_votes(ben.rater_id, trial.trial_id, {c: "tie" for c in store.settings()["criteria"]})
    store.save_choice(ana.rater_id, trial.trial_id, "overall", "left")
    assert store.choices(ben.rater_id, trial.trial_id) == {}   # nobody reads another rater's answers
    with pytest.raises(VoteRefused, match="unknown answer"):
        store.save_choice(ana.rater_id, trial.trial_id, "overall", "A")
    store.revoke("ana")
    with pytest.raises(VoteRefused, match="revoked"):
        store.save_choice(ana.rater_id, trial.trial_id, "overall", "tie")


def test_undo_returns_the_answers_within_the_window_only(run_dir, tmp_path):
    store = make_study(run_dir, tmp_path / "study", criteria=("overall", "lip_sync"), undo_seconds=30)
    rater = store.authenticate(store.invite("ana", []))
    first = next_trial(store, rater.rater_id)
    answers = {"overall": "left", "lip_sync": "tie"}
    start = store.trial(first.trial_id).served_at
    assert store.submit_votes(rater.rater_id, first.trial_id, answers, now=start + 10)
    assert next_trial(store, rater.rater_id).position == 2
    store.undo(rater.rater_id, first.trial_id, now=start + 30)
    assert store.vote_count() == 0 and store.choices(rater.rater_id, first.trial_id) == answers
    assert next_trial(store, rater.rater_id).trial_id == first.trial_id
    assert store.submit_votes(rater.rater_id, first.trial_id, answers, now=start + 100)
    with pytest.raises(VoteRefused, match="Too late"):
        store.undo(rater.rater_id, first.trial_id, now=start + 131)


def _vote_worker(study: str, rater_id: int, trial_ids: list[str], results) -> None:
    store = StudyStore(study)
    written = sum(store.submit_votes(rater_id, trial_id, ALL_TIE) for trial_id in trial_ids)
    written += store.submit_votes(rater_id, trial_ids[0], ALL_TIE)   # a double submit
    store.close()
    results.put(written)


def test_eight_processes_casting_250_votes_each_store_exactly_2000(run_dir, tmp_path):
    store = make_study(run_dir, tmp_path / "study", criteria=("overall",), catch_rate=0.0, repeat_rate=0.0)
    pair = store.pairs().iloc[0]
    work = []
    for index in range(8):
        rater = store.authenticate(store.invite(f"rater{index}", []))
        store.add_trials(rater.rater_id, [{"slot": "real", "pair_id": int(pair.pair_id), "left_clip": pair.clip_a,
                                           "right_clip": pair.clip_b, "sampling": {"rule": "test"}}] * 250)
        trials = [t.trial_id for t in store.rater_trials(rater.rater_id)]
        for trial_id in trials:
            store.mark_served(trial_id)
        work.append((rater.rater_id, trials))
    store.close()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=_vote_worker, args=(str(tmp_path / "study"), rater_id, trials, results))
                 for rater_id, trials in work]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    assert sum(results.get(timeout=10) for _ in processes) == 2000
    assert StudyStore(tmp_path / "study").vote_count() == 2000


def test_media_grants_open_only_this_studys_files_for_active_raters(run_dir, tmp_path):
    store = make_study(run_dir, tmp_path / "study")
    other = make_study(run_dir, tmp_path / "other")
    rater = store.authenticate(store.invite("ana", []))
    trial = next_trial(store, rater.rater_id)
    grant = store.grant(trial.trial_id, "left")
    assert store.grant(trial.trial_id, "left") == grant != store.grant(trial.trial_id, "right")
    path = store.granted_media(grant)
    assert path.parent == (tmp_path / "study" / "media").resolve() and path.suffix == ".mp4"
    assert other.granted_media(grant) is None                      # another study's grant
    media_name = path.name
    for attempt in (media_name, media_name.removesuffix(".mp4"), "../study.sqlite", "..%2Fstudy.sqlite",
                    "A" * 31 + "/", "x" * 32, grant + "x"):
        assert store.granted_media(attempt) is None, attempt
    store.revoke("ana")
    assert store.granted_media(grant) is None
