"""Write the README's screenshots: start the app, click through every page, save docs/screenshots/*.png.

    python scripts/screenshots.py [--out docs/screenshots] [--width 1280]

Uses Playwright with Debian's chromium (`apt-get install -y chromium`) and the offline model (the app falls
back to `smollm2` when the default cannot be loaded). The tests never write these files.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import browser as helpers  # noqa: E402
from browser import BROWSER_ARGS, chromium_path, log_problems, streamlit_server  # noqa: E402

TIMEOUT_MS = 900_000  # the first page waits for the model to load (and calibrate on a first run)
STEP_MS = 240_000


def idle(pg) -> None:
    helpers.idle(pg, TIMEOUT_MS)


def nav(pg, title: str) -> None:
    print(f"page: {title}", flush=True)
    helpers.nav(pg, title, TIMEOUT_MS)


def shot(pg, out: Path, name: str, height: int | None = None) -> Path:
    """A screenshot of the whole page content: the viewport is grown to the content's height first."""
    if height is None:
        height = pg.evaluate("() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
                             " return Math.ceil((m ? m.scrollHeight : document.body.scrollHeight) + 40); }")
    width = pg.viewport_size["width"]
    pg.set_viewport_size({"width": width, "height": max(800, min(int(height), 4000))})
    idle(pg)
    path = out / f"{name}.png"
    pg.screenshot(path=str(path))
    pg.set_viewport_size({"width": width, "height": 900})
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)", flush=True)
    return path


def take(url: str, out: Path, width: int) -> list[Path]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    paths = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=BROWSER_ARGS)
        pg = browser.new_page(viewport={"width": width, "height": 900})
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(url)
        expect(pg.get_by_text("Worked example (live)")).to_be_visible()
        idle(pg)
        expect.set_options(timeout=STEP_MS)  # the model is loaded: later steps take seconds
        pg.set_default_timeout(STEP_MS)
        paths.append(shot(pg, out, "home"))

        nav(pg, "Memory")
        pg.get_by_role("button", name="Failure gallery", exact=False).click()
        expect(pg.get_by_text("Suggested questions")).to_be_visible()
        idle(pg)
        paths.append(shot(pg, out, "memory"))

        pg.get_by_role("button", name="Ask on Inspect").nth(2).click()  # the wrong-context question
        idle(pg)
        expect(pg.get_by_label("Question", exact=True)).to_have_value("Question: in game Z, what is blicket? Answer:")
        paths.append(shot(pg, out, "inspect-silent"))
        question = pg.get_by_label("Question", exact=True)
        question.fill("What does blicket mean in game A?")  # typed as a person would: no scaffolding, no marks
        question.press("Enter")
        idle(pg)
        paths.append(shot(pg, out, "inspect"))

        nav(pg, "Memory")
        pg.get_by_role("button", name="Conflicting contexts").click()
        pg.get_by_role("button", name="Replace it").click()  # the app asks before replacing a non-empty memory
        expect(pg.get_by_text("Loaded: Conflicting contexts")).to_be_visible()
        idle(pg)
        pg.get_by_role("button", name="Ask on Inspect").first.click()
        idle(pg)
        print("heatmap: three more questions", flush=True)
        for _ in range(3):  # "Also ask": three more questions, so the heatmap shows
            pg.get_by_test_id("stMultiSelect").locator("input").click()
            pg.get_by_role("option").first.click()
            pg.keyboard.press("Escape")
            idle(pg)
        paths.append(shot(pg, out, "inspect-heatmap"))

        nav(pg, "Benchmark")
        helpers.run_benchmark(pg, 8, STEP_MS)
        paths.append(shot(pg, out, "benchmark"))
        print("benchmark: baselines against bindings", flush=True)
        pg.get_by_role("tab", name="Baselines vs bindings").click()
        helpers.fill_and_run(pg, "Written bindings asked per size", 8, "Run baselines vs bindings",
                             "tokens/question", STEP_MS)
        paths.append(shot(pg, out, "benchmark-baselines"))

        nav(pg, "Experiments")
        helpers.run_experiment(pg, 4, STEP_MS)
        paths.append(shot(pg, out, "experiments"))
        browser.close()
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    ap.add_argument("--width", type=int, default=1280)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log = Path(tempfile.gettempdir()) / "fastmem-screenshots-streamlit.log"
    start = time.time()
    with streamlit_server(log) as url:
        take(url, args.out, args.width)
    problems = log_problems(log)
    for line in problems:
        print("server log:", line, file=sys.stderr)
    print(f"done in {time.time() - start:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
