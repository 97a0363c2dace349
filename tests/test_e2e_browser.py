"""The running app in a real browser (Chromium via Playwright): write a binding, ask, check the answer,
and save a screenshot of every page to docs/screenshots/."""
import pytest
from browser import BROWSER_ARGS, IDLE_JS, ROOT, chromium_path, log_problems, streamlit_server

pytestmark = pytest.mark.e2e
SHOTS = ROOT / "docs" / "screenshots"
LOG = ROOT / ".pytest-streamlit.log"


@pytest.fixture(scope="module")
def server():
    with streamlit_server(LOG) as url:
        yield url
    assert log_problems(LOG) == []  # no error reached the server log


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=240_000)  # the first page waits for the model to load

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=BROWSER_ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        pg.set_default_timeout(240_000)
        pg.goto(server)
        yield pg
        browser.close()


def idle(pg):
    """Wait until the script run is over (the running indicator is gone)."""
    pg.wait_for_timeout(500)
    pg.wait_for_function(IDLE_JS, timeout=240_000)
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
