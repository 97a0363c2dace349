"""Shared by the browser tests: start `streamlit run app.py` on a free port, find Debian's chromium."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]
# True once the script run is over: the app reports its run state on its root element, and no spinner shows.
IDLE_JS = ("() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
           " return !!app && app.getAttribute('data-test-script-state') === 'notRunning'"
           " && !document.querySelector('.stSpinner'); }")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    return path


@contextmanager
def streamlit_server(log_path: Path, start_timeout: float = 120):
    """Yield the URL of a headless app server; its stdout and stderr go to `log_path`."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                 "--server.fileWatcherType", "none", "--server.port", str(port),
                                 "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.time() + start_timeout
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.read().strip() == b"ok":
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"streamlit did not start; see {log_path}")
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def log_problems(log_path: Path) -> list[str]:
    """Lines of the server log that report an error (tracebacks, exceptions, error-level log records)."""
    bad = ("Traceback", "Exception", "Error", "ERROR", "CRITICAL")
    return [line for line in log_path.read_text(errors="replace").splitlines() if any(b in line for b in bad)]


# Counts the script runs that started since it was first called on this page: a MutationObserver sees the run
# state turn to 'running', however quickly the run ends.
RUNS_JS = ("() => { if (window.__fastmemRuns === undefined) { window.__fastmemRuns = 0;"
           " new MutationObserver(changes => { for (const c of changes)"
           " if (c.target.getAttribute('data-test-script-state') === 'running') window.__fastmemRuns++; })"
           ".observe(document.body, {subtree: true, attributes: true,"
           " attributeFilter: ['data-test-script-state']}); } return window.__fastmemRuns; }")


def runs_started(pg) -> int:
    """Script runs started on this page since the first call (which starts counting)."""
    return pg.evaluate(RUNS_JS)


def rerun_over(pg, since: int, timeout_ms: int = 240_000) -> None:
    """Wait until a script run has started after `runs_started` said `since`, and every run is over: the
    state on screen is that of the new run, never the one before it, however slow the machine."""
    pg.wait_for_function(f"() => window.__fastmemRuns > {since} && ({IDLE_JS})()", timeout=timeout_ms)


def idle(pg, timeout_ms: int = 240_000) -> None:
    """Wait until the app's script run is over (its run state is idle)."""
    pg.wait_for_timeout(500)
    pg.wait_for_function(IDLE_JS, timeout=timeout_ms)
    pg.wait_for_timeout(300)


def nav(pg, title: str, timeout_ms: int = 240_000) -> None:
    pg.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    idle(pg, timeout_ms)


def fill_and_run(pg, label: str, value: int, button: str, done_text: str, timeout_ms: int = 240_000) -> None:
    """Set a number field, press a button, and wait until `done_text` shows (Benchmark, Experiments)."""
    from playwright.sync_api import expect

    field = pg.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    idle(pg, timeout_ms)
    pg.get_by_role("button", name=button, exact=True).click()
    expect(pg.get_by_text(done_text)).to_be_visible(timeout=timeout_ms)
    idle(pg, timeout_ms)


def run_benchmark(pg, words: int, timeout_ms: int = 240_000) -> None:
    fill_and_run(pg, "Words per experiment", words, "Run benchmark", "Download CSV", timeout_ms)


def run_experiment(pg, words: int, timeout_ms: int = 240_000) -> None:
    fill_and_run(pg, "Words", words, "Run", "correct answers", timeout_ms)
