"""Experiments: run a user suite's bindings and see every failure (what was retrieved instead, by how much)."""
import pandas as pd
import streamlit as st

from fastmem import DEFAULT_MODE, MODES, FastmemError, load_suite
from fastmem.demo import charts
from fastmem.demo.text import md
from pages._shared import default_input, page_lab, vis

lab = page_lab()
st.title("Experiments")
st.caption("Load a suite file (JSON or YAML in the benchmark's format) or use the built-in one. Its bindings are "
           "written into a scratch memory (yours is not touched) and each read question is asked.")

up = st.file_uploader("Suite file", type=["json", "yaml", "yml"], key="exp_suite")
try:
    suite = load_suite(up.getvalue()) if up is not None else lab.suite
except FastmemError as exc:
    st.error(f"The suite file is not valid: {md(exc)}")
    st.stop()
st.caption(md(f"Suite '{suite.name}': {len(suite.words)} words; experiments "
                f"{', '.join(e.name for e in suite.experiments)}."))
c1, c2, c3 = st.columns(3)
exp_name = c1.selectbox("Experiment", [e.name for e in suite.experiments], key="exp_name", persist_state="session")
words = suite.split("test") or suite.words
default_input("exp_n", min(8, len(words)))
default_input("exp_mode", DEFAULT_MODE)
n = c2.number_input("Words", 1, len(words), key="exp_n", persist_state="session")
mode = c3.selectbox("Mode", MODES, key="exp_mode", persist_state="session")

if st.button("Run", type="primary", key="exp_run"):
    with st.spinner("Writing the bindings into a scratch memory and reading them back…"):
        try:
            got = lab.runs.experiment(suite, exp_name, int(n), mode)
        except FastmemError as exc:
            st.error(md(exc))
            st.stop()
    results = [{"word": r.word, "context": r.context, "label": r.label, "ok": r.ok, "answer": vis(r.answer),
                "retrieved": r.retrieved, "margin": r.margin, "note": r.note} for r in got]
    failures = [{"binding": f"{r.word} · {r.context} → {r.label}", "retrieved": r.retrieved,
                 "margin": r.margin if r.margin is not None else 0.0} for r in got if not r.ok]
    st.session_state["exp_results"] = (exp_name, mode, results, failures)

if "exp_results" in st.session_state:
    name, mode_used, results, failures = st.session_state["exp_results"]
    good = sum(r["ok"] for r in results)
    st.metric(f"{md(name)} · {mode_used}: correct answers", f"{good}/{len(results)}")
    if failures:
        st.subheader(f"{len(failures)} failures")
        st.altair_chart(charts.failure_chart(failures), width="stretch")
    st.dataframe(pd.DataFrame(results), hide_index=True, width="stretch",
                 column_config={"margin": st.column_config.NumberColumn(
                     "margin", help="score of the correct entry minus the retrieved one (for a correct retrieval: "
                                    "minus the runner-up)", format="%.3f")})
