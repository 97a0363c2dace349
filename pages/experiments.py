"""Experiments: run a user suite's bindings and see every failure (what was retrieved instead, by how much)."""
import pandas as pd
import streamlit as st

from fastmem import MODES, FastmemError, load_suite
from fastmem import charts
from fastmem.prompts import render
from pages._shared import page_lab, vis

lab = page_lab()
st.title("Experiments")
st.caption("Load a suite file (JSON or YAML in the benchmark's format) or use the built-in one. Its bindings are "
           "written into a scratch memory (yours is not touched) and each read question is asked.")

up = st.file_uploader("Suite file", type=["json", "yaml", "yml"], key="exp_suite")
try:
    suite = load_suite(up.getvalue()) if up is not None else lab.suite
except FastmemError as exc:
    st.error(f"The suite file is not valid: {exc}")
    st.stop()
st.caption(f"Suite '{suite.name}': {len(suite.words)} words; experiments {', '.join(e.name for e in suite.experiments)}.")
c1, c2, c3 = st.columns(3)
exp_name = c1.selectbox("Experiment", [e.name for e in suite.experiments], key="exp_name")
words = suite.split("test") or suite.words
n = c2.number_input("Words", 1, len(words), min(8, len(words)), key="exp_n")
mode = c3.selectbox("Mode", MODES, index=MODES.index("dual_key"), key="exp_mode")

if st.button("Run", type="primary", key="exp_run"):
    exp = suite.experiment(exp_name)
    chosen = words[:int(n)]
    rows = [(w.word, ctx, w.labels[i]) for w in chosen for i, ctx in enumerate(exp.contexts)]
    scratch = lab.new_memory()
    bar = st.progress(0.0, text="writing")
    try:
        written = lab.write(scratch, rows, template=exp.write)
    except FastmemError as exc:
        st.error(str(exc))
        st.stop()
    results, failures = [], []
    for k, w in enumerate(written):
        bar.progress((k + 1) / len(written), text=f"asking {k + 1}/{len(written)}")
        if w.status == "error":
            results.append({"word": w.word, "context": w.context, "label": w.label, "ok": False,
                            "answer": "", "retrieved": "", "margin": None, "note": w.error})
            continue
        try:
            r = lab.ask(scratch, render(exp.read, w.word, w.context), mode=mode)
        except FastmemError as exc:
            results.append({"word": w.word, "context": w.context, "label": w.label, "ok": False, "answer": "",
                            "retrieved": "", "margin": None, "note": str(exc)})
            continue
        ok = r.answer == " " + w.label or r.answer.strip() == w.label
        right = scratch.find(w.word, w.context)
        retrieved = scratch.entries[r.chosen] if r.chosen >= 0 else None
        margin = None
        if right is not None and r.chosen >= 0:
            margin = float(r.scores[right] - r.scores[r.chosen]) if r.chosen != right else \
                float(r.scores[right] - max([s for i, s in enumerate(r.scores.tolist()) if i != right] or [0.0]))
        rdesc = charts.entry_label(retrieved.word, retrieved.context, retrieved.label) if retrieved else "nothing"
        results.append({"word": w.word, "context": w.context, "label": w.label, "ok": ok, "answer": vis(r.answer),
                        "retrieved": rdesc, "margin": margin, "note": r.reason})
        if not ok:
            failures.append({"binding": f"{w.word} · {w.context} → {w.label}", "retrieved": rdesc,
                             "margin": margin if margin is not None else 0.0})
    bar.empty()
    st.session_state["exp_results"] = (exp_name, mode, results, failures)

if "exp_results" in st.session_state:
    name, mode_used, results, failures = st.session_state["exp_results"]
    good = sum(r["ok"] for r in results)
    st.metric(f"{name} · {mode_used}: correct answers", f"{good}/{len(results)}")
    if failures:
        st.subheader(f"{len(failures)} failures")
        st.altair_chart(charts.failure_chart(failures), width="stretch")
    st.dataframe(pd.DataFrame(results), hide_index=True, width="stretch",
                 column_config={"margin": st.column_config.NumberColumn(
                     "margin", help="score of the correct entry minus the retrieved one (for a correct retrieval: "
                                    "minus the runner-up)", format="%.3f")})
