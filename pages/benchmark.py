"""Benchmark: the post's experiment on the loaded model, cancellable, with intervals and the post's figures."""
import random

import streamlit as st

from fastmem import MODES
from fastmem import charts
from fastmem.bench import rows_to_csv, rows_to_json, run_bench
from pages._shared import page_lab

lab = page_lab()
st.title("Benchmark")
st.caption("Bindings of held-out test words are written into a fresh memory per experiment (your own memory is "
           "not touched), then read back. Metrics: **write** (the write statement completes to the label), "
           "**read** (the question is answered), **plain** (a context-free question leaks a label: lower is "
           "better), **unrelated** (unrelated questions answered with a label: lower is better), **unchanged** "
           "(unrelated answers stay the plain model's).")

suite = lab.suite
test_words = suite.split("test")
c1, c2 = st.columns(2)
experiments = c1.multiselect("Experiments", [e.name for e in suite.experiments],
                             default=[suite.experiments[0].name], key="bench_experiments")
modes = c2.multiselect("Modes", MODES, default=["none", "raw_both_top1", "dual_key"], key="bench_modes")
c3, c4 = st.columns(2)
n_words = c3.number_input("Words per experiment", 1, len(test_words), min(16, len(test_words)), key="bench_words")
seed = c4.number_input("Seed (which test words)", 0, 10_000, 0, key="bench_seed",
                       help="0 takes the suite's first test words; another seed a random sample of them.")

state = st.session_state
state.setdefault("bench_rows", [])
state.setdefault("bench_info", None)

run_col, stop_col = st.columns([1, 1])
run = run_col.button("Run benchmark", type="primary", key="bench_run", disabled=not experiments or not modes)
# Clicking Stop during a run makes Streamlit rerun this script, which ends the running benchmark at its next
# progress update; the rows finished so far are already in session state and are shown below.
if stop_col.button("Stop", key="bench_stop"):
    if state.get("bench_running"):
        state["bench_info"] = f"Stopped after {len(state['bench_rows'])} rows."
    state["bench_running"] = False

if run:
    words = list(test_words)
    if seed:
        random.Random(int(seed)).shuffle(words)
    others = [w for w in suite.words if w.split != "test"]
    sample = suite.model_copy(update={"words": others + words[:int(n_words)]})
    state["bench_rows"], state["bench_info"], state["bench_running"] = [], None, True
    rows_box = state["bench_rows"]
    with st.status(f"Running {len(experiments)} experiment(s) × {len(modes)} mode(s) on {int(n_words)} words…",
                   expanded=True) as status:
        bar = st.progress(0.0, text="starting")

        def progress(done, total):
            bar.progress(min(1.0, done / max(1, total)), text=f"{done}/{total} prompts")

        rows, timing = run_bench(lab.lm, sample, lab.calibration, lab.geometry, experiments=experiments,
                                 modes=modes, words_per_experiment=int(n_words), progress=progress,
                                 should_stop=lambda: not state.get("bench_running", False),
                                 on_row=rows_box.append)
        state["bench_running"] = False
        state["bench_timing"] = timing
        status.update(label=f"Done: {len(rows)} rows in {timing.total_s:.1f} s "
                            f"({timing.forward_passes} forward passes)", state="complete", expanded=False)

rows = state["bench_rows"]
if state.get("bench_info"):
    st.warning(state["bench_info"])
if rows:
    st.altair_chart(charts.bench_chart(rows), key="bench_chart")
    st.dataframe(charts.bench_table(rows), hide_index=True, width="stretch", key="bench_table",
                 column_config={"rate": st.column_config.NumberColumn(format="%.3f"),
                                "post's figure": st.column_config.NumberColumn(format="%.3f")})
    st.caption("The post's figures are for Pythia-70M; alpha and threshold are this model's calibrated values.")
    d1, d2 = st.columns(2)
    d1.download_button("Download CSV", rows_to_csv(rows), "fastmem-bench.csv", "text/csv", key="bench_csv")
    d2.download_button("Download JSON", rows_to_json(rows, state.get("bench_timing"), lab.calibration),
                       "fastmem-bench.json", "application/json", key="bench_json")
else:
    st.info("No results yet: choose experiments and modes and press Run.")
