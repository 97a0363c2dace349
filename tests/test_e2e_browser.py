"""The running app in a real browser (Chromium via Playwright): write a binding, ask, check the answer,
and save a screenshot of every page to docs/screenshots/."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "docs" / "screenshots"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    log = open(ROOT / ".pytest-streamlit.log", "w")  # noqa: SIM115 - kept open for the server's life
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.fileWatcherType", "none", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("streamlit did not start")
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=240_000)  # the first page waits for the model to load

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        pg.set_default_timeout(240_000)
        pg.goto(server)
        yield pg
        browser.close()


def idle(pg):
    """Wait until the script run is over (the running indicator is gone)."""
    pg.wait_for_timeout(500)
    pg.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"] [data-testid=\"stStatusWidgetRunningIcon\"]')"
                         " && !document.querySelector('.stSpinner')", timeout=240_000)
    pg.wait_for_timeout(300)


def nav(pg, title):
    pg.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    idle(pg)


def shot(pg, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"))


def test_write_ask_and_screenshots(page):
    from playwright.sync_api import expect

    pg = page
    expect(pg.get_by_text("Worked example (live)")).to_be_visible()
    expect(pg.get_by_text("cannot be loaded here")).to_be_visible()  # offline: fallback notice
    expect(pg.get_by_test_id("stDataFrame").first).to_be_visible()
    idle(pg)
    shot(pg, "home")

    nav(pg, "Memory")
    pg.get_by_label("Word", exact=True).fill("wug")
    pg.get_by_label("Context", exact=True).fill("game B")
    pg.get_by_label("Label", exact=True).fill("green")
    pg.get_by_role("button", name="Write binding").click()
    expect(pg.get_by_text("Wrote 1 of 1 rows")).to_be_visible()
    expect(pg.get_by_text("Entries (1)")).to_be_visible()
    idle(pg)
    shot(pg, "memory")

    nav(pg, "Inspect")
    question = pg.get_by_label("Question", exact=True)
    expect(question).to_have_value("Question: in game B, what is wug? Answer:")
    with_memory = pg.get_by_test_id("stMetric").filter(has_text="Answer with memory")
    expect(with_memory.get_by_test_id("stMetricValue")).to_have_text("␣green")
    expect(pg.get_by_text("Top-1 is 'wug' in 'game B'")).to_be_visible()
    idle(pg)
    shot(pg, "inspect")

    nav(pg, "Benchmark")
    words = pg.get_by_label("Words per experiment")
    words.fill("4")
    words.press("Enter")
    idle(pg)
    pg.get_by_role("button", name="Run benchmark").click()
    expect(pg.get_by_text("Download CSV")).to_be_visible()
    idle(pg)
    shot(pg, "benchmark")

    nav(pg, "Experiments")
    num = pg.get_by_label("Words", exact=True)
    num.fill("3")
    num.press("Enter")
    idle(pg)
    pg.get_by_role("button", name="Run", exact=True).click()
    expect(pg.get_by_text("correct answers")).to_be_visible()
    idle(pg)
    shot(pg, "experiments")
    for name in ("home", "memory", "inspect", "benchmark", "experiments"):
        assert (SHOTS / f"{name}.png").stat().st_size < 600_000
