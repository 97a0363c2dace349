"""Time a fresh machine's first start: `streamlit run app.py` with an empty model cache, until the home page's
worked example is on screen in a browser (Playwright, Debian's chromium). That includes converting the GGUF
model once; the shipped calibration (fastmem/data/calibration) is used when its key is this code's.

    python scripts/first_start.py [--runs 1]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from browser import BROWSER_ARGS, chromium_path, streamlit_server  # noqa: E402


def one_start() -> tuple[float, bool]:
    """Seconds from launching the server to the first page, and whether calibration ran."""
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory() as cache:
        os.environ["FASTMEM_CACHE"] = cache
        log = Path(cache) / "server.log"
        start = time.perf_counter()
        with streamlit_server(log) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=BROWSER_ARGS)
            pg = browser.new_page(viewport={"width": 1280, "height": 900})
            pg.goto(url)
            expect(pg.get_by_text("Worked example (live)")).to_be_visible(timeout=900_000)
            seconds = time.perf_counter() - start
            browser.close()
        calibrated = (Path(cache) / "calibration").is_dir()
    return seconds, calibrated


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    times = []
    for i in range(args.runs):
        seconds, calibrated = one_start()
        times.append(seconds)
        print(f"run {i + 1}: first page after {seconds:.1f} s ({'calibrated' if calibrated else 'shipped calibration'})")
    print(f"median of {len(times)}: {statistics.median(times):.1f} s")


if __name__ == "__main__":
    main()
