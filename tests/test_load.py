"""Load test of the running app: several browser sessions at once write bindings and ask questions.

Every session binds the *same* invented words to its *own* labels (two contexts each), so an answer is
only right if sessions stay apart and contexts stay apart. Latency is measured in the browser, from the
user's action to the answer (or the write confirmation) on screen: what a demo audience waits for.

Run as a script for the figures in the README:

    python tests/test_load.py [--sessions 4] [--rounds 2]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import time
from dataclasses import asdict, dataclass, field

import pytest
from browser import BROWSER_ARGS, IDLE_JS, ROOT, chromium_path, log_problems, streamlit_server

pytestmark = pytest.mark.e2e
LOG = ROOT / ".pytest-streamlit-load.log"
WORDS = ["wug", "dax", "toma", "zib"]  # one per round; every session uses the same ones
CONTEXTS = ["game A", "game B"]
LABELS = ["red", "blue", "green", "yellow", "white", "cat", "fish", "tree", "cup", "milk", "boat", "stone",
          "lion", "bread", "king", "moon"]  # single tokens; session s, round r gets two of them
ANSWERED = re.compile(r"answered in (\d+) ms")  # the Inspect page's own timing of the answer
RESUBMIT_AFTER_MS = 60_000  # an answer takes seconds even under load; after this the Enter was lost
TIMEOUT_MS = int(os.environ.get("FASTMEM_LOAD_TIMEOUT_MS", 300_000))  # first pages wait for the model to load


@dataclass
class Request:
    session: int
    kind: str  # "write" or "ask"
    seconds: float
    ok: bool
    detail: str = ""
    server_seconds: float | None = None  # asks: the app's own "answered in N ms" (the model, under load)


@dataclass
class LoadReport:
    sessions: int
    rounds: int
    requests: list[Request] = field(default_factory=list)
    wall_seconds: float = 0.0
    resubmits: int = 0  # questions whose Enter the browser dropped and that were sent again

    @property
    def errors(self) -> list[Request]:
        return [r for r in self.requests if not r.ok]

    def latency(self, kind: str | None = None, server: bool = False) -> dict[str, float]:
        times = sorted(r.server_seconds if server else r.seconds for r in self.requests
                       if r.ok and (kind is None or r.kind == kind) and (not server or r.server_seconds is not None))
        if not times:
            return {}
        pct = statistics.quantiles(times, n=100, method="inclusive") if len(times) > 1 else [times[0]] * 99
        return {"n": len(times), "p50": pct[49], "p95": pct[94], "max": times[-1]}

    def summary(self) -> str:
        lines = [f"{self.sessions} sessions x {self.rounds} rounds: {len(self.requests)} requests, "
                 f"{len(self.errors)} errors, {self.resubmits} questions sent twice, "
                 f"{self.wall_seconds:.0f} s wall"]
        for name, lat in (("write", self.latency("write")), ("ask", self.latency("ask")), ("all", self.latency()),
                          ("ask, in the app", self.latency("ask", server=True))):
            if lat:
                lines.append(f"  {name:<15} n={lat['n']:<3} p50 {lat['p50']:.2f} s  p95 {lat['p95']:.2f} s"
                             f"  max {lat['max']:.2f} s")
        lines += [f"  error: session {r.session} {r.kind}: {r.detail}" for r in self.errors]
        return "\n".join(lines)


def labels_for(session: int, round_: int) -> tuple[str, str]:
    i = (2 * (session + round_)) % len(LABELS)
    return LABELS[i], LABELS[(i + 1) % len(LABELS)]


async def _idle(page) -> None:
    await page.wait_for_timeout(300)
    await page.wait_for_function(IDLE_JS, timeout=TIMEOUT_MS)


async def _nav(page, title: str) -> None:
    await page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    await _idle(page)


def _first_lines(message: str) -> str:
    """The error's first line and what Playwright saw on screen (its "Actual value" line), if it says."""
    lines = message.splitlines()
    seen = [line.strip() for line in lines if "Actual value" in line or "resolved to" in line]
    return " | ".join([lines[0][:200]] + seen[:2]) if lines else ""


async def _timed(report: LoadReport, session: int, kind: str, action) -> Request:
    start = time.perf_counter()
    try:
        await action()
        request = Request(session, kind, time.perf_counter() - start, True)
    except Exception as exc:  # a wrong answer or a timeout is a failed request, reported with its reason
        request = Request(session, kind, time.perf_counter() - start, False,
                          f"{type(exc).__name__}: {_first_lines(str(exc))}")
    report.requests.append(request)
    return request


async def _session(browser, url: str, session: int, report: LoadReport) -> None:
    from playwright.async_api import expect

    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        await page.goto(url)
        await expect(page.get_by_text("Worked example (live)")).to_be_visible()
        await _idle(page)
        for round_ in range(report.rounds):
            word = WORDS[round_ % len(WORDS)]
            labels = labels_for(session, round_)
            await _nav(page, "Memory")
            for ctx, label in zip(CONTEXTS, labels):
                n_entries = 2 * round_ + CONTEXTS.index(ctx) + 1

                async def write(ctx=ctx, label=label, n_entries=n_entries):
                    await page.get_by_label("Word", exact=True).fill(word)
                    await page.get_by_label("Context", exact=True).fill(ctx)
                    await page.get_by_label("Label", exact=True).fill(label)
                    await page.get_by_role("button", name="Write binding").click()
                    await expect(page.get_by_text(f"Entries ({n_entries})")).to_be_visible()

                await _timed(report, session, "write", write)
                await _idle(page)
            await _nav(page, "Inspect")
            answer = page.get_by_test_id("stMetric").filter(has_text="Answer with memory") \
                .get_by_test_id("stMetricValue")
            # game B first: the page opens on the first entry's game A question, so each ask changes the
            # answer on screen and is timed from the question to the new answer
            for ctx, label in reversed(list(zip(CONTEXTS, labels))):
                async def ask(ctx=ctx, label=label):
                    question = page.get_by_label("Question", exact=True)
                    text = f"Question: in {ctx}, what is {word}? Answer:"
                    await question.fill(text)
                    await expect(question).to_have_value(text)
                    await question.press("Enter")
                    try:
                        await expect(answer).to_have_text(f"␣{label}", timeout=RESUBMIT_AFTER_MS)
                    except AssertionError:
                        # Rarely (2 of 16 asks in one CI run, never locally) the browser drops an Enter
                        # and the question is never rerun; a user presses Enter again, so does this test,
                        # and counts it. A wrong answer (another session's label) still fails below.
                        await _idle(page)
                        await expect(question).to_have_value(text)
                        report.resubmits += 1
                        await question.press("Enter")
                        await expect(answer).to_have_text(f"␣{label}")

                request = await _timed(report, session, "ask", ask)
                await _idle(page)  # the run is over, so the caption on screen is this run's
                if request.ok:
                    caption = await page.get_by_text(ANSWERED).first.text_content()
                    request.server_seconds = int(ANSWERED.search(caption).group(1)) / 1000
    finally:
        await context.close()


async def run_load(url: str, sessions: int, rounds: int) -> LoadReport:
    """Drive `sessions` browser sessions at once against the app at `url`."""
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=TIMEOUT_MS)
    report = LoadReport(sessions, rounds)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_path(), args=BROWSER_ARGS)
        start = time.perf_counter()
        outcomes = await asyncio.gather(*(_session(browser, url, s, report) for s in range(sessions)),
                                        return_exceptions=True)
        report.wall_seconds = time.perf_counter() - start
        await browser.close()
    for s, outcome in enumerate(outcomes):
        if isinstance(outcome, BaseException):  # navigation itself failed: count it, keep the others
            report.requests.append(Request(s, "session", 0.0, False, f"{type(outcome).__name__}: {outcome}"))
    return report


def test_four_sessions_at_once_get_their_own_answers():
    with streamlit_server(LOG) as url:
        report = asyncio.run(run_load(url, sessions=4, rounds=2))
    print(report.summary())
    (ROOT / ".pytest-load.json").write_text(json.dumps({**asdict(report), "latency": report.latency()}, indent=1))
    assert len(report.requests) == 4 * 2 * 4  # 4 sessions x 2 rounds x (2 writes + 2 asks)
    assert report.errors == [], report.summary()
    assert report.resubmits * 4 <= 4 * 2 * 2, report.summary()  # a lost Enter is rare, never the rule
    assert log_problems(LOG) == []


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Load test of the running app (several browser sessions at once).")
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with streamlit_server(LOG) as server_url:
        result = asyncio.run(run_load(server_url, args.sessions, args.rounds))
    print(result.summary())
    print("server log problems:", log_problems(LOG) or "none")
