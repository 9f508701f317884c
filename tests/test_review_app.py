"""The rater app through Streamlit's AppTest: tokens, voting, ties, next, resume, double submit, the vote gate,
and that a page never shows a model, a path or another rater's answers."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mheval.review.storage import SIGN_IN_FAILURES_ALLOWED, STUDY_ENV, StudyStore
from mheval.review.study import StudyConfig, create_study
from review_fixtures import ADAPTER_SPEC, MODELS, RUN_NAME, tiny_run

APP = Path(__file__).resolve().parents[1] / "mheval" / "review" / "app.py"
CRITERIA = ("overall", "lip_sync", "visual_quality", "speech_naturalness")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("run"))


@pytest.fixture
def study(run_dir, tmp_path, monkeypatch) -> StudyStore:
    store = create_study(run_dir, StudyConfig(models=MODELS, dwell_factor=0.0), tmp_path / "study", progress=False)
    monkeypatch.setenv(STUDY_ENV, str(store.directory))
    return store


def open_app(token: str | None = None) -> AppTest:
    test = AppTest.from_file(str(APP), default_timeout=60)
    test.run()
    if token is not None:
        test.text_input(key="token").set_value(token)
        test.button[0].click()
        test.run()
    assert not test.exception, [e.value for e in test.exception]
    return test


def texts(test: AppTest) -> str:
    parts = [str(e.value) for kind in ("markdown", "caption", "error", "warning", "success", "info", "title")
             for e in getattr(test, kind)]
    parts += [e.proto.body for e in test.get("html")] + [e.proto.text for e in test.get("progress")]
    return "\n".join(parts + [b.label for b in test.button])


def progress(test: AppTest) -> str:
    return test.get("progress")[0].proto.text


def answer(test: AppTest, verdicts: dict[str, str]) -> AppTest:
    for criterion, verdict in verdicts.items():
        test.button(key=f"{criterion}-{verdict}").click().run()
    return test


def test_the_sign_in_page_locks_out_a_token_guesser(study, caplog):
    token = study.invite("ana", [])
    test = open_app()
    for guess in range(SIGN_IN_FAILURES_ALLOWED):
        test.text_input(key="token").set_value(f"guess-{guess}")
        test.button[0].click()
        test.run()
        assert "not valid" in texts(test)
    test.text_input(key="token").set_value(token)
    test.button[0].click()
    test.run()
    assert "Too many invalid tokens" in texts(test) and "Trial 1" not in texts(test)
    refusals = [record.getMessage() for record in caplog.records if record.name == "mheval.review"]
    assert len(refusals) == SIGN_IN_FAILURES_ALLOWED + 1 and all("sign-in refused from" in r for r in refusals)
    assert "Too many invalid tokens" in refusals[-1] and not [r for r in refusals if token in r or "guess-" in r]


def test_tokens_valid_wrong_and_revoked(study):
    token = study.invite("ana", [])
    assert "not valid" in texts(open_app("not-a-token"))
    test = open_app(token)
    assert progress(test).startswith("Trial 1 of ")
    study.revoke("ana")
    assert "revoked" in texts(open_app(token))
    test.run()                                              # a session already signed in is signed out
    assert "revoked" in texts(test) and test.text_input(key="token") is not None


def test_vote_tie_and_next_are_stored_per_criterion(study):
    token = study.invite("ana", [])
    test = open_app(token)
    answer(test, {"overall": "left", "lip_sync": "right", "visual_quality": "tie", "speech_naturalness": "left"})
    assert test.button(key="overall-left").proto.type == "primary"
    test.button(key="submit").click().run()
    assert "Saved." in texts(test) and progress(test).startswith("Trial 2 of ")
    answer(test, {criterion: "tie" for criterion in CRITERIA})
    test.button(key="submit").click().run()
    votes = study.votes()
    assert len(votes) == 8 and set(votes[votes.position == 2].verdict) == {"tie"}
    assert dict(zip(votes[votes.position == 1].criterion, votes[votes.position == 1].verdict)) == {
        "overall": "left", "lip_sync": "right", "visual_quality": "tie", "speech_naturalness": "left"}


def test_incomplete_answers_are_refused_with_a_message(study):
    test = open_app(study.invite("ana", []))
    answer(test, {"overall": "left"}).button(key="submit").click().run()
    assert "Answer every question first: Lip sync, Visual quality, Speech naturalness" in texts(test)
    assert study.vote_count() == 0 and progress(test).startswith("Trial 1 of ")


def test_resume_later_keeps_answers_and_progress(study):
    token = study.invite("ana", [])
    test = open_app(token)
    answer(test, {criterion: "left" for criterion in CRITERIA}).button(key="submit").click().run()
    answer(test, {"overall": "right"})
    later = open_app(token)                                 # a new browser session: refresh, or another day
    assert progress(later).startswith("Trial 2 of ")
    assert later.button(key="overall-right").proto.type == "primary"


def test_a_double_submit_from_two_sessions_stores_one_vote(study):
    token = study.invite("ana", [])
    first, second = open_app(token), open_app(token)        # two tabs on the same trial
    for test in (first, second):
        answer(test, {criterion: "tie" for criterion in CRITERIA})
    first.button(key="submit").click().run()
    second.button(key="submit").click().run()
    assert study.vote_count() == 4 and not [e for e in second.error]
    assert progress(second).startswith("Trial 2 of ")


def test_undo_brings_the_last_trial_back(study):
    test = open_app(study.invite("ana", []))
    answer(test, {criterion: "left" for criterion in CRITERIA}).button(key="submit").click().run()
    test.button(key="undo").click().run()
    assert study.vote_count() == 0 and progress(test).startswith("Trial 1 of ")
    assert test.button(key="lip_sync-left").proto.type == "primary"


def test_a_vote_before_both_clips_could_have_played_is_refused(run_dir, tmp_path, monkeypatch):
    store = create_study(run_dir, StudyConfig(models=MODELS, dwell_factor=50.0), tmp_path / "slow", progress=False)
    monkeypatch.setenv(STUDY_ENV, str(store.directory))
    test = open_app(store.invite("ana", []))
    answer(test, {criterion: "left" for criterion in CRITERIA}).button(key="submit").click().run()
    assert "Play both clips to the end first" in texts(test) and store.vote_count() == 0


def test_the_page_shows_no_model_path_or_other_raters_answers(study, run_dir):
    ana, ben = study.invite("ana", []), study.invite("ben", ["en"])
    test = open_app(ana)
    answer(test, {criterion: "right" for criterion in CRITERIA})
    other = open_app(ben)
    assert all(other.button(key=f"{c}-right").proto.type == "secondary" for c in CRITERIA)
    shown = texts(test) + texts(other)
    clips = study.clips()
    secrets = [*MODELS, ADAPTER_SPEC, RUN_NAME, str(run_dir), str(study.directory), *clips.clip_id,
               *clips.media_name, *(Path(path).name for path in clips.source_path)]
    assert not [secret for secret in secrets if secret in shown]
    assert "review-media/" in shown                          # the clips are there, under grants
