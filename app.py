"""fastmem lab: the router and shared frame (model picker, memory summary). Run: streamlit run app.py"""
import streamlit as st

from pages._shared import current_lab, model_picker, sidebar

st.set_page_config(page_title="fastmem lab", page_icon="🧠", layout="wide")

# Declared first, so the sidebar shows these pages (not the raw pages/ folder) while the model loads.
nav = st.navigation([
    st.Page("pages/home.py", title="How it works", icon=":material/lightbulb:", default=True),
    st.Page("pages/memory.py", title="Memory", icon=":material/database:"),
    st.Page("pages/inspect.py", title="Inspect", icon=":material/search:"),
    st.Page("pages/benchmark.py", title="Benchmark", icon=":material/bar_chart:"),
    st.Page("pages/experiments.py", title="Experiments", icon=":material/science:"),
])
model_picker()
lab = current_lab()
st.session_state["lab_name"] = lab.lm.name if lab is not None else None
st.session_state["lab_weights"] = str(lab.lm.dtype).removeprefix("torch.") if lab is not None else None
if lab is None:
    st.stop()
nav.run()
sidebar(lab)  # after the page, so the memory summary includes what the page just wrote
