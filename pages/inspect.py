"""Inspect: one or more questions, retrieval scores, the chosen entry and why, tokens before/after."""
import time

import pandas as pd
import streamlit as st

from fastmem import MODES, FastmemError
from fastmem import charts
from fastmem.retrieval import NEEDS_PROJECTOR
from pages._shared import page_lab, require_bank, token_html, vis

lab = page_lab()
st.title("Inspect a question")
bank = require_bank(lab)
if bank is None:
    st.stop()
if len(bank) == 0:
    st.info("The memory is empty: answers are the plain model's. Add bindings on the Memory page.")


def keyed_bank(layer: int):
    """The memory with keys at `layer` (re-keyed copies cached per memory content)."""
    if layer == bank.key_layer:
        return bank
    sig = (id(bank), tuple(e.slot + (e.label,) for e in bank.entries), layer)
    cache = st.session_state.setdefault("_rekeyed", {})
    if sig not in cache:
        cache.clear()
        cache[sig] = lab.rekey(bank, layer)
    return cache[sig]


@st.fragment
def inspector():
    cal = lab.calibration
    generated = [lab.question(e.word, e.context).text for e in bank.entries]
    default_q = generated[0] if generated else lab.question("blicket", "game A").text
    question = st.text_input("Question", value=default_q, key="question")
    with st.expander("Mark the word and context yourself (optional)"):
        c1, c2 = st.columns(2)
        mark_word = c1.text_input("Word in the question", key="mark_word")
        mark_context = c2.text_input("Context in the question", key="mark_context")
    more = st.multiselect("Also ask (questions generated from the memory's bindings)", generated, key="more_q")

    c1, c2, c3, c4, c5 = st.columns(5)
    mode = c1.selectbox("Mode", MODES, index=MODES.index("dual_key"), key="mode")
    use_projector = c5.toggle("Key projector", value=True, key="projector",
                              help="Off: modes that need the trained projector fall back to raw_both_top1.")
    if not use_projector and mode in NEEDS_PROJECTOR:
        mode = "raw_both_top1"
        c5.caption("→ raw_both_top1")
    s = cal.settings(mode)
    alpha = c2.slider("α (strength)", 0.0, 16.0, float(s.alpha), 0.25, key=f"alpha_{mode}")
    layer = c3.number_input("Key layer", 0, lab.lm.n_layers, bank.key_layer, key="key_layer",
                            help=f"Calibrated: {cal.key_layer}. Used by raw_both_top1 (others use the projector "
                                 "or the symbol/context layers).")
    thr_choice = c4.selectbox("Threshold", ["calibrated", "off", "custom"], key="thr_choice",
                              help=f"Calibrated for {mode}: {s.threshold}")
    threshold = "default"
    if thr_choice == "off":
        threshold = None
    elif thr_choice == "custom":
        threshold = c4.slider("value", -1.0, 1.0, float(s.threshold or 0.5), 0.05, key="thr_value")
    n_gen = st.slider("Generated tokens", 1, 16, 4, key="n_gen")

    try:
        use_bank = keyed_bank(int(layer))
        prompts = [lab.parse_question(question, mark_word or None, mark_context or None)]
        prompts += [lab.parse_question(q) for q in more if q != question]
        start = time.perf_counter()
        first = lab.ask(use_bank, prompts[0], mode=mode, alpha=alpha, threshold=threshold)
        elapsed = time.perf_counter() - start
        others = [lab.ask(use_bank, p, mode=mode, alpha=alpha, threshold=threshold) for p in prompts[1:]]
    except FastmemError as exc:
        st.error(str(exc))
        return
    r = first
    entries = [charts.entry_label(e.word, e.context, e.label) for e in use_bank.entries]

    st.markdown(token_html(r.encoded), unsafe_allow_html=True)
    a, b = st.columns(2)
    a.metric("Answer without memory", vis(r.base_answer))
    b.metric("Answer with memory", vis(r.answer))
    st.markdown(f"**Why:** {r.reason}")
    settings = f"mode {r.mode}, α={r.alpha:g}, threshold={r.threshold}, key layer {use_bank.key_layer}; " \
               f"answered in {elapsed * 1000:.0f} ms"
    timing = st.empty()
    timing.caption(settings)
    # The answer is on screen now; the continuations (n_gen forward steps) fill these in at the end.
    g1, g2 = st.columns(2)
    gen_base, gen_mem = g1.empty(), g2.empty()
    gen_base.caption("Greedy generation without memory: generating…")
    gen_mem.caption("Greedy generation with memory: generating…")

    if len(use_bank):
        if others:
            matrix = [r.scores.tolist()] + [o.scores.tolist() for o in others]
            st.altair_chart(charts.score_heatmap([p.text for p in prompts], entries, matrix), width="stretch")
            st.dataframe(pd.DataFrame([{"question": o.prompt.text, "without": vis(o.base_answer),
                                        "with memory": vis(o.answer), "why": o.reason} for o in [r] + others]),
                         hide_index=True, width="stretch")
        else:
            st.altair_chart(charts.score_bars(entries, r.scores.tolist(), r.chosen, r.threshold), width="stretch")
    t1, t2, t3 = st.columns(3)
    with t1:
        if r.chosen >= 0:
            st.altair_chart(charts.token_bars(lab.correction_tokens(r.value, 8), "Tokens the correction promotes",
                                              "#2e9d5b"), width="stretch")
        else:
            st.caption("No correction injected.")
    with t2:
        st.altair_chart(charts.token_bars(lab.top_tokens(r.base_logits, 8), "Next token before"), width="stretch")
    with t3:
        st.altair_chart(charts.token_bars(lab.top_tokens(r.logits, 8), "Next token after", "#e67e22"),
                        width="stretch")

    start = time.perf_counter()
    r = lab.continue_answer(r, n_gen)
    gen_ms = (time.perf_counter() - start) * 1000
    gen_base.text_area("Greedy generation without memory", vis(r.base_generation), disabled=True, key="gen_base")
    gen_mem.text_area("Greedy generation with memory", vis(r.generation), disabled=True, key="gen_mem")
    timing.caption(f"{settings}, {n_gen} generated tokens in {gen_ms:.0f} ms")


inspector()
