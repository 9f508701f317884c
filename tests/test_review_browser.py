"""The review app in a real browser: `mheval review serve` on a study of puppet clips, Debian Chromium (Playwright)
signs in with a token and votes with the keyboard; everything the browser received — DOM, every HTTP response,
every websocket frame, the media URLs — is searched for the model labels, the adapter, the run path and the clip
file names, and every media response's headers and body for anything that links two of them or puts them in an
order (dates, ETags, hashes, lengths). The media endpoint is probed with requests it must refuse, finished trials'
URLs must be dead, and a forged X-Forwarded-For must not reset the sign-in limit. A screenshot goes to
test-artifacts/."""
import email.utils
import hashlib
import http.client
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from mheval.review.storage import LOG_FILE, SIGN_IN_FAILURES_ALLOWED, StudyStore
from mheval.review.study import StudyConfig, create_study
from mheval.runner import RunRequest, run
from mheval.store import RunStore
from test_dashboard_browser import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, REPO, free_port, settle, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")]

MODELS = ("zqlabelmagi", "zqlabelother")
KEYS = {"overall": ("1", "2", "3"), "lip_sync": ("Q", "W", "E"), "visual_quality": ("A", "S", "D"),
        "speech_naturalness": ("Z", "X", "V")}


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> StudyStore:
    """Two labelled puppet 'models' (one with its audio 300 ms late) on the smoke suite's English and German items."""
    base = tmp_path_factory.mktemp("zqsecretbase")
    run_dir = base / "zqsecretrun"
    run(RunRequest(suite="smoke", models=[f"{MODELS[0]}=puppet", f"{MODELS[1]}=puppet"], languages=["en", "de"],
                   model_options={MODELS[1]: {"shift_ms": "300"}}, metrics=["technical"], out=run_dir,
                   progress=False))
    return create_study(run_dir, StudyConfig(models=MODELS), base / "zqsecretstudy", progress=False)


def serve(study: StudyStore, log_dir: Path, *options: str):
    port = free_port()
    log = open(log_dir / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "mheval.cli", "review", "serve", str(study.directory),
                               "--port", str(port), *options], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://localhost:{port}", server)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def served(study, tmp_path_factory):
    yield from serve(study, tmp_path_factory.mktemp("review"))


@pytest.fixture(scope="module")
def served_behind_proxy(study, tmp_path_factory):
    """Another study from the same run, served as behind a reverse proxy on this machine."""
    other = create_study(Path(study.settings()["run_dir"]), StudyConfig(models=MODELS),
                         tmp_path_factory.mktemp("zqsecretproxied") / "study", progress=False)
    for port in serve(other, tmp_path_factory.mktemp("proxied"), "--trusted-proxy", "127.0.0.1"):
        yield other, port


def secrets_of(study: StudyStore) -> list[str]:
    """Everything that would unblind a rater."""
    settings = study.settings()
    run_store = RunStore.open_existing(settings["run_dir"])
    clip_files = [Path(path).name for path in run_store.clips().path]
    run_store.close()
    clips = study.clips()
    return [*MODELS, "puppet", settings["run_dir"], Path(settings["run_dir"]).name, str(study.directory),
            study.directory.name, *clip_files, *clips.media_name, *clips.clip_id, *clips.source_sha256]


def get(port: int, path: str) -> tuple[int, str, bytes]:
    """Status, content type and body, following redirects; the path is sent as written (no '..' normalisation)."""
    for _ in range(5):
        connection = http.client.HTTPConnection("localhost", port, timeout=30)
        connection.request("GET", path)
        response = connection.getresponse()
        status, kind, body, location = response.status, response.getheader("Content-Type", ""), response.read(), \
            response.getheader("Location")
        connection.close()
        if status not in (301, 302, 307, 308):
            return status, kind, body
        path = location
    raise AssertionError(f"redirect loop at {path}")


def refused(port: int, path: str) -> bool:
    """Nothing of the study comes back: an error status, or at most the app's own page."""
    status, kind, body = get(port, path)
    return (status >= 400 or kind.startswith("text/html")) and not kind.startswith("video/") \
        and b"SQLite format" not in body and b"ftyp" not in body[:64]


def mp4_times(data: bytes) -> list[bytes]:
    """The creation and modification times of the movie, its tracks and their media (mvhd, tkhd, mdhd)."""
    times, stack = [], [(0, len(data))]
    while stack:
        start, end = stack.pop()
        while start + 8 <= end:
            size, kind = struct.unpack(">I4s", data[start:start + 8])
            if size < 8 or start + size > end:
                break
            if kind in (b"moov", b"trak", b"mdia"):
                stack.append((start + 8, start + size))
            elif kind in (b"mvhd", b"tkhd", b"mdhd"):
                times.append(data[start + 12:start + (20 if data[start + 8] == 0 else 28)])
            start += size
    return times


def assert_media_responses_unlinkable(media: list[dict]) -> None:
    """Nothing in what the media endpoint sent lets two responses be linked or ordered: one set of header names,
    one value per header (apart from a partial response's range and its length, against one total length), no
    dates but the response's own `date`, no validators or digests, and bodies whose mp4 times are all zero."""
    answered = [response for response in media if response["status"] in (200, 206)]
    assert len(answered) >= 4
    assert len({tuple(sorted(response["headers"])) for response in answered}) == 1
    varying = {"date", "content-range", "content-length"}
    for name in set(answered[0]["headers"]) - varying:
        assert len({response["headers"][name] for response in answered}) == 1, name
    assert not set(answered[0]["headers"]) & {"etag", "last-modified", "content-md5", "digest", "repr-digest",
                                                "content-digest", "content-disposition", "age", "expires"}
    assert {response["headers"]["cache-control"] for response in answered} == {"no-store"}
    totals = {response["headers"].get("content-range", "/" + response["headers"]["content-length"]).rsplit("/")[-1]
              for response in answered}
    assert len(totals) == 1, totals                                 # one length for every clip
    for response in media:
        for name, value in response["headers"].items():
            if name != "date":
                assert email.utils.parsedate(value) is None, (name, value)
                assert not re.search(r"\b[0-9a-f]{16,}\b", value), (name, value)
    bodies = [response["body"] for response in answered if response["body"] and response["body"][4:8] == b"ftyp"]
    times = [mp4_times(body) for body in bodies]   # a body cut short inside the index has none to read
    assert any(times) and all(set(b"".join(found)) <= {0} for found in times)


def test_blind_keyboard_voting_in_chromium(study, served):
    from playwright.sync_api import sync_playwright

    token = study.invite("browser-rater", ["en", "de"])
    received: list[bytes] = []
    media_urls: list[str] = []
    media: list[dict] = []

    def on_response(response) -> None:
        received.append(response.url.encode())
        received.extend(f"{key}: {value}".encode() for key, value in response.headers.items())
        try:
            body = response.body()
            received.append(body)
        except Exception:   # bodies of redirects and aborted media range requests are not available
            body = None
        if "review-media/" in response.url:
            media_urls.append(response.url)
            media.append({"status": response.status, "headers": response.headers, "body": body})

    def on_socket(socket) -> None:
        for event in ("framereceived", "framesent"):
            socket.on(event, lambda frame: received.append(frame if isinstance(frame, bytes) else frame.encode()))

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.on("response", on_response)
        page.on("websocket", on_socket)
        page.goto(f"http://localhost:{served}", timeout=120_000)
        page.get_by_label("Token").fill(token)
        page.get_by_label("Token").press("Enter")
        total = None
        for trial in range(1, 100):
            page.get_by_text(f"Trial {trial} of").wait_for(timeout=120_000)
            settle(page)
            total = total or int(page.get_by_text("Trial 1 of").inner_text().rsplit(" ", 1)[1])
            assert page.locator("video[playsinline]").count() == 2
            page.wait_for_function("[...document.querySelectorAll('video')].every(v => v.readyState >= 2 "
                                   "&& v.duration > 0.3)", timeout=60_000)   # the evened-out files play
            received.append(page.content().encode())
            if trial == 1:   # straight away: refused by the server, nothing stored
                page.keyboard.press("Enter")
                page.get_by_text("Play both clips to the end first").wait_for(timeout=60_000)
                assert study.vote_count() == 0
            page.evaluate("Promise.all([...document.querySelectorAll('video')].map(v => v.play().catch(() => 0)))")
            page.wait_for_timeout(300)
            assert page.evaluate("[...document.querySelectorAll('video')].filter(v => !v.paused).length") <= 1
            choice = (trial - 1) % 3   # A, tie, B in turn
            for keys in KEYS.values():
                page.keyboard.press(keys[choice])
                settle(page)
            if trial == 2:
                page.screenshot(path=str(ARTIFACTS / "review-trial.png"), full_page=True)
            seconds = float(page.get_by_text("Play A and B to the end").inner_text().split("about ")[1].split(" s")[0])
            page.wait_for_timeout(int(seconds * 1000) + 500)
            page.keyboard.press("Enter")
            if trial == total:
                break
        page.get_by_text("All done").wait_for(timeout=60_000)
        received.append(page.content().encode())
        browser.close()

    votes = study.votes()
    assert len(votes) == total * 4 and votes.trial_id.nunique() == total and set(votes.rater) == {"browser-rater"}
    by_position = votes.groupby("position").verdict.agg(set)
    assert all(by_position[p] == {("left", "tie", "right")[(p - 1) % 3]} for p in by_position.index)
    assert set(votes.language) <= {"en", "de"}

    everything = b"\n".join(received) + "\n".join(media_urls).encode()
    files = [(study.media_dir / name).read_bytes() for name in study.clips().media_name]
    digests = [make(data).hexdigest() for data in files for make in (hashlib.md5, hashlib.sha1, hashlib.sha256)]
    leaks = [secret for secret in secrets_of(study) + digests if secret.encode() in everything]
    assert not leaks, f"sent to the browser: {leaks}"
    assert len(set(media_urls)) >= 2 * total
    assert_media_responses_unlinkable(media)
    for url in sorted(set(media_urls)):                             # every trial is finished: its clips are gone
        assert get(served, url.split(str(served), 1)[1])[0] == 404, url
    assert (ARTIFACTS / "review-trial.png").stat().st_size > 20_000


def test_media_requests_outside_a_grant_are_refused(study, served):
    rater = study.authenticate(study.invite("probe", []))
    from mheval.review.study import next_trial

    trial = next_trial(study, rater.rater_id)
    grant = study.grant(trial.trial_id, "left")
    media_name = study.clips().media_name.iloc[0]
    status, kind, body = get(served, f"/review-media/{grant}")
    assert status == 200 and kind == "video/mp4" and body[4:8] == b"ftyp"
    for path in ("/review-media/", f"/review-media/{media_name}", f"/review-media/{media_name[:32]}",
                 "/review-media/" + "A" * 32, "/review-media/../study.sqlite", "/review-media/..%2Fstudy.sqlite",
                 "/review-media/%2e%2e%2fstudy.sqlite", f"/review-media/{grant}/../../study.sqlite",
                 f"/media/{media_name}", f"/app/static/{media_name}", "/study.sqlite", "/media/study.sqlite"):
        assert refused(served, path), path
    study.revoke("probe")
    assert get(served, f"/review-media/{grant}")[0] == 404


def sign_in_as(browser, port: int, token: str, forwarded_for: str) -> str:
    """Sign in from a fresh page whose requests (the websocket's too) claim `forwarded_for`; the outcome shown."""
    context = browser.new_context(extra_http_headers={"X-Forwarded-For": forwarded_for})
    page = context.new_page()
    page.goto(f"http://localhost:{port}", timeout=120_000)
    page.get_by_label("Token").fill(token)
    page.get_by_label("Token").press("Enter")
    outcome = page.get_by_text(re.compile("not valid|Too many invalid tokens|Trial 1 of"))
    outcome.wait_for(timeout=60_000)
    shown = outcome.inner_text()
    context.close()
    return shown


def test_a_forged_x_forwarded_for_does_not_reset_the_sign_in_limit(study, served, served_behind_proxy):
    """Issue 20 item 2. Last in this file: it locks localhost out of the module's study for ten minutes. Behind
    the default server the socket's peer counts, whatever a client claims; with `--trusted-proxy 127.0.0.1` the
    forwarded address counts (which also shows the header reached the server)."""
    from playwright.sync_api import sync_playwright

    proxied, proxied_port = served_behind_proxy
    tokens = {port: store.invite("forger", []) for store, port in ((study, served), (proxied, proxied_port))}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        for port in (served, proxied_port):
            for guess in range(SIGN_IN_FAILURES_ALLOWED):
                assert "not valid" in sign_in_as(browser, port, f"guess-{guess}", "203.0.113.66")
        assert "Too many invalid tokens" in sign_in_as(browser, served, tokens[served], "198.51.100.23")
        assert "Too many invalid tokens" in sign_in_as(browser, proxied_port, tokens[proxied_port], "203.0.113.66")
        assert "Trial 1 of" in sign_in_as(browser, proxied_port, tokens[proxied_port], "198.51.100.23")
        browser.close()
    logs = {store: (store.directory / LOG_FILE).read_text() for store in (study, proxied)}
    assert logs[study].count("sign-in refused from localhost") == SIGN_IN_FAILURES_ALLOWED + 1
    assert "203.0.113.66" not in logs[study] and "198.51.100.23" not in logs[study]
    assert logs[proxied].count("sign-in refused from 203.0.113.66") == SIGN_IN_FAILURES_ALLOWED + 1
