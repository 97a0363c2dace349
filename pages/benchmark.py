"""Benchmark: the post's experiment on the loaded model (modes × metrics), the memory against its baselines as
bindings grow, and the capacity curve, each in a background run that widgets cannot abort.

The run lives in a thread kept in session state (`pages/_jobs.py`); a fragment polls it every second while
it runs. Changing any widget reruns the page but not the benchmark; Stop takes effect after the current
forward batch, and finished rows are kept.
"""
import random

import streamlit as st

from fastmem import DEFAULT_MODE, Lab
from fastmem.demo import charts
from fastmem.demo.text import md
from pages._jobs import BenchJob
from pages._shared import default_input, page_lab
from pages._size_runs import size_section

lab = page_lab()
state = st.session_state
st.title("Benchmark")
st.caption("Bindings of held-out test words are written into a fresh memory per experiment (your own memory is "
           "not touched), then read back. Metrics include **write** (the write statement completes to the label), "
           "**read** (the question is answered), **plain** (a context-free question leaks a label), **unrelated** "
           "(unrelated questions answered with a label), **unchanged** (unrelated answers stay the plain model's); "
           "columns marked ↓ are lower-is-better.")

tab_modes, tab_baselines, tab_capacity = st.tabs(["Modes × metrics", "Baselines vs bindings", "Capacity curve"])
with tab_baselines:
    size_section(lab, "baselines")
with tab_capacity:
    size_section(lab, "capacity")
with tab_modes:
    suite = lab.suite
    test_words = suite.split("test")
    c1, c2 = st.columns(2)
    default_input("bench_experiments", [suite.experiments[0].name])
    default_input("bench_modes", ["none", "token_match", "span_match"])
    default_input("bench_words", min(16, len(test_words)))
    default_input("bench_seed", 0)
    experiments = c1.multiselect("Experiments", [e.name for e in suite.experiments], key="bench_experiments",
                                 persist_state="session")
    modes = c2.multiselect("Modes", [m.name for m in Lab.modes(answering=True)], key="bench_modes",
                         persist_state="session",
                           help="The memory's modes, and the in-context baselines (statements before the "
                                "question: slower, several times the tokens).")
    c3, c4 = st.columns(2)
    c3.number_input("Words per experiment", 1, len(test_words), key="bench_words", persist_state="session")
    c4.number_input("Seed (which test words)", 0, 10_000, key="bench_seed", persist_state="session",
                    help="0 takes the suite's first test words; another seed a random sample of them.")


    def start_job() -> None:
        """Run button callback (before the page is drawn, so Run and Stop show the new state at once)."""
        current = state.get("bench_job")
        exps, chosen_modes = list(state["bench_experiments"]), list(state["bench_modes"])
        if (current is not None and current.running) or not exps or not chosen_modes:
            return
        n, seed = int(state["bench_words"]), int(state["bench_seed"])
        words = list(test_words)
        if seed:
            random.Random(seed).shuffle(words)
        others = [w for w in suite.words if w.split != "test"]
        sample = suite.model_copy(update={"words": others + words[:n]})

        def run(progress, should_stop, on_row):
            return lab.runs.bench(sample, experiments=exps, modes=chosen_modes, words=n, progress=progress,
                                  should_stop=should_stop, on_row=on_row)

        job = state["bench_job"] = BenchJob(exps, chosen_modes, n).start(run)
        state["bench_rows"] = job.rows  # the same list: rows appear here as they finish


    def stop_job() -> None:
        if state.get("bench_job") is not None:
            state["bench_job"].stop()


    def quick_job() -> None:
        """A run a class can wait for: one experiment, the plain model and the default mode, 4 words."""
        state.update({"bench_experiments": [suite.experiments[0].name], "bench_modes": ["none", DEFAULT_MODE],
                      "bench_words": min(4, len(test_words)), "bench_seed": 0})
        start_job()


    job: BenchJob | None = state.get("bench_job")
    running = job is not None and job.running
    st.button(f"Quick run: {md(suite.experiments[0].name)}, none and {DEFAULT_MODE}, 4 words (about 20 s on 2 cores)",
              key="bench_quick", on_click=quick_job, disabled=running)
    run_col, stop_col = st.columns(2)
    run_col.button("Run benchmark", type="primary", key="bench_run", on_click=start_job,
                   disabled=running or not experiments or not modes)
    stop_col.button("Stop", key="bench_stop", disabled=not running, on_click=stop_job,
                    help="Ends the run after the current forward batch; finished rows are kept.")


    def show_results(rows: list, final: bool, timing) -> None:
        pinned = {"experiment": st.column_config.TextColumn(pinned=True, width="medium"),
                  "mode": st.column_config.TextColumn(pinned=True, width="medium")}
        table_col, legend_col = st.columns([5, 2])
        table_col.dataframe(lab.runs.table(rows, compact=True), hide_index=True, width="stretch",  # fits unpinned
                            column_config={"mode": st.column_config.TextColumn(width=105)})
        with legend_col:
            st.markdown("**What each column counts** (↓: lower is better)\n\n" + "\n".join(
                f"- **{name}**: {meaning}" for name, meaning in lab.runs.legend(rows)))
        with st.expander("Every metric, with 95% intervals"):
            st.dataframe(lab.runs.table(rows), hide_index=True, width="stretch", column_config=pinned)
        st.caption(lab.runs.FOOTNOTE + " α and threshold are this model's calibrated values; the post's figures are for "
                              "Pythia-70M (compare shapes, not decimals).")
        if not final:
            return
        st.altair_chart(charts.bench_chart(rows))
        with st.expander("Plain-text table (as the command line prints it)"):
            st.code(lab.runs.text_table(rows), language=None)
        d1, d2 = st.columns(2)
        d1.download_button("Download CSV", lab.runs.csv(rows), "fastmem-bench.csv", "text/csv", key="bench_csv")
        d2.download_button("Download JSON", lab.runs.json(rows, timing),
                           "fastmem-bench.json", "application/json", key="bench_json")


    @st.fragment(run_every=1.0 if running else None)
    def live() -> None:
        current: BenchJob | None = state.get("bench_job")
        if current is None:
            st.info("No results yet: choose experiments and modes and press Run.")
            return
        rows = list(current.rows)
        what = f"{len(current.experiments)} experiment(s) × {len(current.modes)} mode(s) on {current.n_words} words"
        if current.running:
            frac = current.done / current.total if current.total else 0.0
            stopping = " — stopping after this batch…" if current.status == "stopping" else ""
            total = f"{current.total:,}" if current.total else "counting"
            st.progress(min(1.0, frac), text=f"Running {what}: {current.done:,}/{total} prompts, "
                                             f"{len(rows)} rows, {current.elapsed:.0f} s{stopping}")
        elif running:  # it ended since this fragment was set to poll: redraw the whole page once, without polling
            st.rerun()
        elif current.status == "failed":
            st.error(f"The run failed after {len(rows)} rows: {md(current.error)}")
        elif current.status == "stopped":
            st.warning(f"Stopped after {len(rows)} rows ({current.elapsed:.0f} s); the finished rows are kept.")
        else:
            t = current.timing
            st.success(f"Done: {what}, {len(rows)} rows in {current.elapsed:.1f} s"
                       + (f" ({t.forward_passes} forward passes)." if t is not None else "."))
        if rows:
            show_results(rows, final=not current.running, timing=current.timing)


    live()
