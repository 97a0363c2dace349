"""The Benchmark page's size runs: memory against its baselines as bindings grow, and the capacity curve.

Each runs in its own background job (`pages/_jobs.py`), apart from the modes × metrics benchmark; the library
does the work (`fastmem.baselines`, `fastmem.scale`) and draws the charts (`fastmem.charts`).
"""
from __future__ import annotations

import json
from dataclasses import asdict

import streamlit as st

from fastmem import DEFAULT_MODE, MODES, Lab
from fastmem.demo import charts
from fastmem.demo.text import md
from pages._jobs import BenchJob
from pages._shared import default_input

KINDS = {
    "baselines": dict(sizes=[2, 10, 100, 1000], default=[2, 10, 100], title="Baselines vs bindings"),
    "capacity": dict(sizes=[100, 1000, 10_000, 100_000], default=[100, 1000], title="Capacity curve"),
}


def size_section(lab, kind: str) -> None:
    state, spec = st.session_state, KINDS[kind]
    if kind == "baselines":
        st.caption("Memories of N bindings (N/2 invented words × game A/B), asked their written bindings, each word "
                   "in a never-written context, a look-alike, the context-free question and the fact prompts. "
                   "**in_context_all** puts every statement before the question, **in_context_word** only the "
                   "asked word's, **codebook** is GRACE-style (one question form's last-token key). Cost: one "
                   "question alone, median; a prompt longer than the model's window does not fit.")
    else:
        st.caption("One memory grown to N bindings, asked at each size: written words in their context, in a "
                   "never-written context, look-alikes and the fact prompts; retrieval time per question and write "
                   "time per binding. 10,000 bindings take about 5 minutes to write on a 2-core CPU; 100,000 about 45.")
    c1, c2 = st.columns(2)
    default_input(f"{kind}_sizes", spec["default"])
    sizes = c1.multiselect("Bindings", spec["sizes"], key=f"{kind}_sizes", persist_state="session")
    if kind == "baselines":
        default_input(f"{kind}_modes", list(lab.runs.baseline_modes))
        modes = c2.multiselect("Modes", [m.name for m in Lab.modes(answering=True)], key=f"{kind}_modes",
                               persist_state="session")
    else:
        default_input(f"{kind}_mode", DEFAULT_MODE)
        modes = [c2.selectbox("Mode", MODES, key=f"{kind}_mode", persist_state="session")]
    default_input(f"{kind}_questions", 32 if kind == "baselines" else 64)
    st.number_input("Written bindings asked per size" if kind == "baselines" else "Written words asked per size",
                    2, 512, key=f"{kind}_questions", persist_state="session",
                    help="More gives tighter intervals and takes longer.")
    job_key = f"{kind}_job"
    job: BenchJob | None = state.get(job_key)
    running = job is not None and job.running

    def start() -> None:
        current = state.get(job_key)
        if (current is not None and current.running) or not state[f"{kind}_sizes"]:
            return
        chosen, asked = sorted(state[f"{kind}_sizes"]), int(state[f"{kind}_questions"])
        if kind == "baselines":
            chosen_modes = list(state[f"{kind}_modes"]) or list(lab.runs.baseline_modes)

            def run(progress, should_stop, on_row):
                return lab.runs.baselines(chosen, chosen_modes, questions=asked, progress=progress,
                                          should_stop=should_stop)
        else:
            chosen_modes = [state[f"{kind}_mode"]]

            def run(progress, should_stop, on_row):
                return lab.runs.scale(chosen, sample=asked, mode=chosen_modes[0], progress=progress,
                                      should_stop=should_stop)
        state[job_key] = BenchJob([f"{n:,}" for n in chosen], chosen_modes, 0).start(_keeping_rows(run))

    r, s = st.columns(2)
    r.button(f"Run {spec['title'].lower()}", type="primary", key=f"{kind}_run", on_click=start,
             disabled=running or not sizes or not modes)
    s.button("Stop", key=f"{kind}_stop", disabled=not running, on_click=lambda: job and job.stop(),
             help="Ends the run after the current memory (or write batch); finished sizes are kept.")
    _results(lab, kind, running)


def _keeping_rows(run):
    """A size run returns (rows, costs) at the end; the job keeps its rows for the page."""
    def wrapped(progress, should_stop, on_row):
        rows, extra = run(progress, should_stop, on_row)
        for row in rows:
            on_row(row)
        return rows, extra
    return wrapped


def _results(lab, kind: str, running: bool) -> None:
    @st.fragment(run_every=1.0 if running else None)
    def live() -> None:
        job: BenchJob | None = st.session_state.get(f"{kind}_job")
        if job is None:
            st.info("No results yet: choose sizes and press Run.")
            return
        if job.running:
            frac = job.done / job.total if job.total else 0.0
            st.progress(min(1.0, frac), text=f"{md(job.message or 'Starting…')} ({job.elapsed:.0f} s)")
            return
        if running:  # it ended since this fragment started polling: redraw the page once
            st.rerun()
        if job.status == "failed":
            st.error(f"The run failed: {md(job.error)}")
            return
        rows, extra = list(job.rows), job.timing
        if job.status == "stopped":
            st.warning(f"Stopped after {job.elapsed:.0f} s; the finished sizes are shown.")
        else:
            st.success(f"Done in {job.elapsed:.0f} s.")
        if not rows or not extra:
            return
        if kind == "baselines":
            st.altair_chart(charts.baselines_chart(rows, extra, columns=3))  # fits the page
            st.code(lab.runs.format_sizes(kind, rows, extra), language=None)
            data = {"rows": [asdict(r) for r in rows], "costs": [asdict(c) for c in extra]}
        else:
            st.altair_chart(charts.capacity_chart(rows, extra, columns=3))
            st.code(lab.runs.format_sizes(kind, rows, extra), language=None)
            data = {"points": [asdict(r) for r in rows], "timings": [asdict(t) for t in extra]}
        st.download_button("Download JSON", json.dumps(data, indent=1), f"fastmem-{kind}.json", "application/json",
                           key=f"{kind}_download")

    live()
