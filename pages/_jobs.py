"""A benchmark run in a background thread, kept in the user's session state.

Streamlit reruns the page script whenever a widget changes; a benchmark run inside the script would be cut
off by that rerun. The job runs in its own thread instead: reruns only read its state, Stop sets an event
that `run_bench` polls after every forward batch, and the rows finished so far stay in `job.rows`.
No Streamlit calls here (the thread has no script context).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class BenchJob:
    experiments: list[str]
    modes: list[str]
    n_words: int
    rows: list = field(default_factory=list)
    done: int = 0
    total: int = 0
    message: str = ""  # what the run is doing now, when it says (size runs)
    status: str = "starting"  # starting / running / stopping / stopped / done / failed
    error: str | None = None
    timing: object = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.status in ("starting", "running", "stopping")

    @property
    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started

    def start(self, run) -> "BenchJob":
        """Run `run(progress, should_stop, on_row) -> (rows, timing)` in a daemon thread; `timing` is whatever
        the run reports besides its rows (bench: Timing; size runs: costs or timings per size)."""

        def progress(done, total, message: str = ""):
            self.done, self.total, self.message = int(done), int(total), message
            if self.status == "starting":
                self.status = "running"

        def work():
            try:
                _, self.timing = run(progress, self._stop.is_set, self.rows.append)
                self.status = "stopped" if self._stop.is_set() else "done"
            except Exception as exc:  # noqa: BLE001 - shown to the user; the thread must not die silently
                self.error = f"{type(exc).__name__}: {exc}"
                self.status = "failed"
            finally:
                self.finished = time.time()

        self._thread = threading.Thread(target=work, name="fastmem-bench", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.running:
            self._stop.set()
            self.status = "stopping"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run is over (tests); True when it is."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running
