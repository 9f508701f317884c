"""The review server without a browser (issue 20, blinding and access): media responses that cannot be linked or
ordered, grants that lapse with their trial or their time, and whose address the sign-in limit counts."""
import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from mheval.media import probe
from mheval.review import server
from mheval.review.command import serve_environment
from mheval.review.storage import GRANT_SECONDS_ENV, LOG_FILE, MEDIA_ROUTE, STUDY_ENV, StudyStore
from mheval.review.study import StudyConfig, create_study, next_trial
from review_fixtures import MODELS, tiny_run

CRITERIA = ("overall", "lip_sync", "visual_quality", "speech_naturalness")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("run"))


@pytest.fixture
def study(run_dir, tmp_path, monkeypatch) -> StudyStore:
    store = create_study(run_dir, StudyConfig(models=MODELS, dwell_factor=0.0, undo_seconds=600), tmp_path / "study",
                         progress=False)
    monkeypatch.setenv(STUDY_ENV, str(store.directory))
    monkeypatch.setenv(GRANT_SECONDS_ENV, "60")
    server._store.cache_clear()
    yield store
    server._store.cache_clear()


@pytest.fixture
def client(study) -> TestClient:
    """The media endpoint as the server mounts it."""
    return TestClient(Starlette(routes=[Route(f"/{MEDIA_ROUTE}/{{grant}}", server.media)]))


def vote(store: StudyStore, rater_id: int) -> None:
    trial = next_trial(store, rater_id)
    assert store.submit_votes(rater_id, trial.trial_id, dict.fromkeys(CRITERIA, "tie"))


def test_every_media_file_of_a_study_has_one_length_and_still_decodes(study):
    files = sorted(study.media_dir.glob("*.mp4"))
    clips = study.clips()
    assert len(files) == len(clips) >= 4 and len({path.stat().st_size for path in files}) == 1
    for clip in clips.itertuples():   # the padding is a box players skip: the clip plays as long as before
        assert abs(probe(study.media_dir / clip.media_name).video_seconds - clip.seconds) < 0.2
        data = (study.media_dir / clip.media_name).read_bytes()
        assert data.index(b"moov") < data.index(b"mdat") < data.rindex(b"free")   # index first, padded at the end
    assert study.even_out_media() == 0                              # idempotent
    with open(files[0], "ab") as handle:                            # a study made before media were evened out
        handle.write(b"\0\0\0\x10free" + bytes(8))
    assert study.even_out_media() == len(files)                     # the longest too: it gets a box header
    assert len({path.stat().st_size for path in files}) == 1 and probe(files[0]).frame_count > 0


def test_media_responses_carry_nothing_that_links_or_orders_clips(study, client):
    """No ETag or Last-Modified (they came from the files' times: the models' encoding order, and the same value for
    the same clip under any URL); every response the same length; ranges still work for seeking."""
    raters = [study.authenticate(study.invite(name, [])).rater_id for name in ("ana", "ben")]
    responses = {}
    for rater_id in raters:
        for _ in range(3):
            trial = next_trial(study, rater_id)
            for side in ("left", "right"):
                responses[trial.trial_id, side] = client.get(f"/{MEDIA_ROUTE}/{study.grant(trial.trial_id, side)}")
            vote(study, rater_id)
    assert {response.status_code for response in responses.values()} == {200}
    headers = {tuple(sorted(response.headers.items())) for response in responses.values()}
    assert len(headers) == 1, headers                               # byte for byte the same headers
    names = {name for name, _ in next(iter(headers))}
    assert not names & {"etag", "last-modified", "content-md5", "digest", "repr-digest", "content-disposition"}
    assert dict(next(iter(headers)))["cache-control"] == "no-store"
    trials = study.trials().set_index("trial_id")
    shown = {trials.left_clip[t] if side == "left" else trials.right_clip[t] for t, side in responses}
    assert len(shown) > 1                                           # different clips, still one length


def test_range_requests_work_and_a_conditional_one_gets_the_whole_file(study, client):
    rater_id = study.authenticate(study.invite("ana", [])).rater_id
    trial = next_trial(study, rater_id)
    url = f"/{MEDIA_ROUTE}/{study.grant(trial.trial_id, 'left')}"
    whole = client.get(url).content
    part = client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole)}"
    assert "etag" not in part.headers and "last-modified" not in part.headers
    tail = client.get(url, headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == whole[-16:]
    conditional = client.get(url, headers={"Range": "bytes=0-9", "If-Range": "Thu, 01 Jan 1970 00:00:00 GMT"})
    assert conditional.status_code == 200 and conditional.content == whole


def test_a_finished_trials_media_url_answers_404(study, client):
    """Issue 20 item 3: a grant opens its clip only while its trial is the rater's current one."""
    rater_id = study.authenticate(study.invite("ana", [])).rater_id
    first = next_trial(study, rater_id)
    urls = [f"/{MEDIA_ROUTE}/{study.grant(first.trial_id, side)}" for side in ("left", "right")]
    assert [client.get(url).status_code for url in urls] == [200, 200]
    vote(study, rater_id)
    assert [client.get(url).status_code for url in urls] == [404, 404]
    second = next_trial(study, rater_id)
    later = f"/{MEDIA_ROUTE}/{study.grant(second.trial_id, 'left')}"
    assert client.get(later).status_code == 200
    study.undo(rater_id, first.trial_id)                            # the first trial is current again, the second not
    assert client.get(urls[0]).status_code == 200 and client.get(later).status_code == 404


def test_a_grant_lapses_after_its_time_and_the_page_gets_a_new_one(study):
    rater_id = study.authenticate(study.invite("ana", [])).rater_id
    trial = next_trial(study, rater_id)
    issued = time.time()
    grant = study.grant(trial.trial_id, "left", now=issued)
    assert study.grant_seconds == 1800 and server._store().grant_seconds == 60     # the server's --grant-minutes
    assert study.granted_media(grant, now=issued + 1799) is not None
    assert study.granted_media(grant, now=issued + 1801) is None
    fresh = study.grant(trial.trial_id, "left", now=issued + 1801)
    assert fresh != grant and study.granted_media(fresh, now=issued + 1802) is not None
    assert study.granted_media(grant, now=issued + 1802) is None    # the old one is gone for good
    with pytest.raises(ValueError, match="positive"):
        StudyStore(study.directory, grant_seconds=0)


def test_grants_of_a_study_made_before_they_lapsed_lapse_at_once(study):
    rater_id = study.authenticate(study.invite("ana", [])).rater_id
    trial = next_trial(study, rater_id)
    grant = study.grant(trial.trial_id, "left")
    study.close()
    with sqlite3.connect(study.directory / "study.sqlite") as db:   # the grants table as it was
        db.execute("ALTER TABLE grants DROP COLUMN issued_at")
    reopened = StudyStore(study.directory)
    assert reopened.granted_media(grant) is None
    assert reopened.granted_media(reopened.grant(trial.trial_id, "left")) is not None


def _client_seen_by_the_app(environment: dict[str, str], monkeypatch, peer: str, forwarded: str) -> str:
    """The client address an app gets behind uvicorn configured as Streamlit configures it (no proxy arguments,
    so FORWARDED_ALLOW_IPS from the environment decides), for a request from `peer` claiming `forwarded`."""
    import uvicorn

    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["client"][0])

    config = uvicorn.Config(app)
    config.load()
    scope = {"type": "http", "client": (peer, 50000), "headers": [(b"x-forwarded-for", forwarded.encode())],
             "scheme": "http", "path": "/", "method": "GET"}
    asyncio.run(config.loaded_app(scope, None, None))
    return seen[0]


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path, monkeypatch):
    """Issue 20 item 2: uvicorn trusted X-Forwarded-For from 127.0.0.1, so a local client chose its own address for
    the sign-in limit. By default the socket's peer counts; `--trusted-proxy` names the proxies to believe."""
    default = serve_environment(tmp_path, (), 30)
    assert _client_seen_by_the_app(default, monkeypatch, "127.0.0.1", "203.0.113.7") == "127.0.0.1"
    assert _client_seen_by_the_app(default, monkeypatch, "::1", "203.0.113.7") == "::1"
    proxied = serve_environment(tmp_path, ("127.0.0.1",), 30)
    assert _client_seen_by_the_app(proxied, monkeypatch, "127.0.0.1", "203.0.113.7") == "203.0.113.7"
    assert _client_seen_by_the_app(proxied, monkeypatch, "198.51.100.2", "203.0.113.7") == "198.51.100.2"
    # a client that sends its own header through the proxy: the proxy appends the real peer, and that one counts
    assert _client_seen_by_the_app(proxied, monkeypatch, "127.0.0.1", "203.0.113.7, 198.51.100.9") == "198.51.100.9"
    assert default[GRANT_SECONDS_ENV] == "1800"


def test_serve_options_are_checked(tmp_path, capsys):
    from mheval.cli import main

    with pytest.raises(SystemExit) as exit_code:
        main(["review", "serve", str(tmp_path), "--trusted-proxy", "nginx"])
    assert exit_code.value.code == 2 and "'nginx' is not an IP address or network" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["review", "serve", str(tmp_path), "--grant-minutes", "0"])
    assert "more than 0 minutes" in capsys.readouterr().err


def test_the_server_logs_to_the_study(study):
    import logging

    server.log_to_study(study.directory)
    server.log_to_study(study.directory)                            # once, however often it starts
    logger = logging.getLogger("mheval.review")
    try:
        logger.warning("sign-in refused from 198.51.100.4: This token is not valid for this study.")
        for handler in logger.handlers:
            handler.flush()
        lines = (study.directory / LOG_FILE).read_text().splitlines()
        assert len(lines) == 1 and "sign-in refused from 198.51.100.4" in lines[0]
    finally:
        for handler in [h for h in logger.handlers if getattr(h, "review_log", False)]:
            logger.removeHandler(handler)
            handler.close()
        logger.propagate = True
