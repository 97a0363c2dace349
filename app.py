"""fastmem lab: the router and shared frame (model picker, memory summary). Run: streamlit run app.py"""
import streamlit as st

from pages._shared import current_lab, model_picker, sidebar

st.set_page_config(page_title="fastmem lab", page_icon="🧠", layout="wide")

model_picker()
lab = current_lab()
st.session_state["lab_name"] = lab.lm.name if lab is not None else None
sidebar(lab)

nav = st.navigation([
    st.Page("pages/home.py", title="How it works", icon="💡", default=True),
    st.Page("pages/memory.py", title="Memory", icon="🗂️"),
    st.Page("pages/inspect.py", title="Inspect", icon="🔍"),
    st.Page("pages/benchmark.py", title="Benchmark", icon="📊"),
    st.Page("pages/experiments.py", title="Experiments", icon="🧪"),
])
if lab is None:
    st.stop()
nav.run()
