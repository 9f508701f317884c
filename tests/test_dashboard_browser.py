"""The dashboard in a real browser: `mheval dashboard` serves a puppet run, Debian Chromium (through Playwright, no
browser download) loads the leaderboard and a drill-down, and screenshots go to test-artifacts/ for a person to see."""
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from smoke_runs import puppet_smoke_run

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,900"]

pytestmark = [pytest.mark.slow, pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"dashboard exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"dashboard not healthy at {url} after {seconds} s")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    run_dir = puppet_smoke_run(tmp_path_factory.getbasetemp())
    port = free_port()
    log = open(tmp_path_factory.mktemp("dashboard") / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "mheval.cli", "dashboard", str(run_dir), "--port", str(port)],
                              cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    try:
        wait_healthy(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:  # Playwright gives the browser a fresh profile directory of its own
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser.new_page(viewport={"width": 1280, "height": 900})
        browser.close()


def settle(page) -> None:
    """Wait until Streamlit has finished running the script (its status widget disappears)."""
    page.wait_for_timeout(500)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=180_000)
    page.wait_for_timeout(1500)  # data grids and charts draw on canvases/SVG after they are attached


def test_leaderboard_and_drilldown_render_in_chromium(served, page):
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(served, timeout=120_000)
    page.get_by_role("heading", name="Leaderboard").wait_for(timeout=120_000)
    page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=60_000)
    settle(page)
    assert page.get_by_text("physical consistency: no metric for it in this run.").is_visible()
    page.screenshot(path=str(ARTIFACTS / "dashboard-leaderboard.png"))

    # Streamlit scrolls inside its own container, so a tall viewport is what captures the whole drill-down
    page.set_viewport_size({"width": 1280, "height": 2300})
    page.goto(f"{served}/?page=drilldown&item=de-platform-01", timeout=120_000)
    page.get_by_text("measured sync offset").wait_for(timeout=180_000)
    page.locator("video").first.wait_for(timeout=60_000)
    page.locator("[data-testid='stVegaLiteChart']").nth(2).wait_for(timeout=60_000)
    settle(page)
    assert page.get_by_text("Der Zug hat schon wieder Verspätung.").is_visible()
    page.screenshot(path=str(ARTIFACTS / "dashboard-drilldown.png"))
    for name in ("dashboard-leaderboard.png", "dashboard-drilldown.png"):
        assert (ARTIFACTS / name).stat().st_size > 20_000
