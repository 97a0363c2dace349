"""Inspect: one or more questions, retrieval scores, the chosen entry and why, tokens before/after.

Results are shown with display elements only (metric, code, markdown, charts), never with keyed input
widgets: a keyed widget keeps its first value and would show the previous question's results.
"""
import time

import pandas as pd
import streamlit as st

from fastmem import DEFAULT_MODE, MODES, FastmemError, Lab, ShareView
from fastmem.demo import charts
from fastmem.demo.text import md
from pages._shared import page_lab, require_bank, token_html, vis

lab = page_lab()
state = st.session_state
MODE_INFO = {m.name: m for m in Lab.modes()}
st.title("Inspect a question")
bank = require_bank(lab)
if bank is None:
    st.stop()
if len(bank) == 0:
    st.info("The memory is empty: answers are the plain model's. Add bindings (or load a preset) on the Memory page.")


def apply_view(view: ShareView) -> None:
    """Put a shared or suggested view into the widgets (before they are drawn in this run)."""
    mode = view.mode if view.mode in MODES else DEFAULT_MODE
    s = lab.calibration.settings(mode)
    state.update({"question": view.question, "mark_word": view.mark_word, "mark_context": view.mark_context,
                  "mode": mode, "projector": True, "key_layer": bank.key_layer, "more_q": [],
                  f"alpha_{mode}": float(s.alpha if view.alpha is None else view.alpha)})
    if view.threshold == "default":
        state["thr_choice"] = "calibrated"
    elif view.threshold is None:
        state["thr_choice"] = "off"
    else:
        state["thr_choice"], state["thr_value"] = "custom", float(view.threshold)


if "_pending_view" in state:  # set by a preset's suggested question or an opened share file
    apply_view(state.pop("_pending_view"))


def found_line(f) -> str:
    """Where the best entry's word and context were found, in one line."""
    word = f"word '{f.word_text}' ({f.word_score:.2f})" if f.word_text else "no word span"
    context = f"context '{f.context_text}' ({f.context_score:.2f})" if f.context_text else "no context span"
    return md(f"Found in the question (yellow, blue): {word}, {context}; 1.00 is the same tokens.")


def show_reason(r) -> None:
    """The reason in plain words, prominently: green when a correction was injected, blue when not."""
    if r.chosen >= 0:
        st.success(f"**Memory used.** {md(r.reason)}", icon=":material/memory:")
    else:
        st.info(f"**Nothing injected.** {md(r.reason)}", icon=":material/block:")


def clear_marks() -> None:
    """A new question: the marks made for the previous one no longer apply."""
    marks = [m for m in (state.get("mark_word"), state.get("mark_context")) if m]
    if marks:
        state["mark_word"] = state["mark_context"] = ""
        state["_marks_cleared"], state["_old_marks"] = True, ", ".join(repr(m) for m in marks)


def note_mode_settings() -> None:
    """Say so when the new mode brings its own calibrated α and threshold."""
    mode = state.get("mode", DEFAULT_MODE)
    s = lab.calibration.settings(mode)
    state["_mode_note"] = (f"Its calibrated settings: α {s.alpha:g}, threshold "
                           f"{'off' if s.threshold is None else f'{s.threshold:.2f}'}"
                           + (" (the threshold box is set to custom: it stays as you set it)."
                              if state.get("thr_choice") == "custom" else "."))


@st.fragment
def inspector():
    cal = lab.calibration
    generated = [lab.question(e.word, e.context).text for e in bank.entries]
    default_q = generated[0] if generated else lab.question("blicket", "game A").text
    for key, value in (("question", default_q), ("mark_word", ""), ("mark_context", ""), ("mode", DEFAULT_MODE),
                       ("projector", True), ("thr_choice", "calibrated"), ("n_gen", 4), ("key_layer", bank.key_layer)):
        state.setdefault(key, value)  # defaults set once here, so the widgets below take no `value`
    state["more_q"] = [q for q in state.get("more_q", []) if q in generated]
    question = st.text_input("Question", key="question", persist_state="session", on_change=clear_marks,
                             help="Type it as you would say it: the default mode (span_match) looks for every "
                                  "written word and context anywhere in it. Marks below override that search.")
    if state.pop("_marks_cleared", None):
        st.caption(md(f"Marks cleared for the new question (they were: {state.pop('_old_marks', '')})."))
    keyed = None
    try:
        keyed = lab.key_question(question, state.get("mark_word") or None, state.get("mark_context") or None)
    except FastmemError:
        pass  # the same error is shown below, where the question is asked
    slot_free = MODE_INFO[state.get("mode", DEFAULT_MODE)].slot_free
    unknown_form = keyed is not None and keyed.by_last_word and len(bank) > 0 and not slot_free
    marking = bool(state.get("mark_word") or state.get("mark_context"))  # stays open while being filled
    with st.expander("Mark the word and context yourself (optional)", expanded=unknown_form or marking):
        c1, c2 = st.columns(2)
        mark_word = c1.text_input("Word in the question", key="mark_word", persist_state="session")
        mark_context = c2.text_input("Context in the question", key="mark_context", persist_state="session")
    if keyed is not None and slot_free and not keyed.marked:
        st.caption("Read as typed: the memory looks for every written word and context anywhere in the question.")
    elif keyed is not None:
        (st.warning if unknown_form else st.caption)(md(keyed.describe()))
    more = st.multiselect("Also ask (questions generated from the memory's bindings)", generated, key="more_q")

    c1, c2, c3, c4, c5 = st.columns(5)
    mode = c1.selectbox("Mode", MODES, key="mode", persist_state="session", on_change=note_mode_settings)
    use_projector = c5.toggle("Key projector", key="projector", persist_state="session",
                              help="Off: modes that need the trained projector fall back to raw_both_top1.")
    if not use_projector and MODE_INFO[mode].needs_projector:
        mode = "raw_both_top1"
        c5.caption("→ raw_both_top1")
    s = cal.settings(mode)
    state.setdefault(f"alpha_{mode}", float(s.alpha))
    alpha = c2.slider("α (strength)", 0.0, 16.0, step=0.25, key=f"alpha_{mode}", persist_state="session")
    info = MODE_INFO[mode]
    reads_key_layer = "key" in info.keys and not info.needs_projector  # the projector is fixed to its own layer
    layer = c3.number_input("Key layer", 0, lab.lm.n_layers, key="key_layer", persist_state="session",
                            disabled=not reads_key_layer,
                            help=f"Calibrated: {cal.key_layer}. Used by raw_both_top1 only (span_match reads layer 0, "
                                 f"token_match every token's state at layer {cal.token_layer}; others the projector "
                                 "or the symbol/context layers), so it is greyed out for the other modes.")
    thr_choice = c4.selectbox("Threshold", ["calibrated", "off", "custom"], key="thr_choice", persist_state="session",
                              help=f"Calibrated for {mode}: {s.threshold}")
    threshold = "default"
    if thr_choice == "off":
        threshold = None
    elif thr_choice == "custom":
        state.setdefault("thr_value", float(s.threshold if s.threshold is not None else 0.5))
        threshold = c4.slider("value", -1.0, 1.0, step=0.05, key="thr_value", persist_state="session")
    n_gen = st.slider("Generated tokens", 1, 16, key="n_gen", persist_state="session")
    st.caption(f"**{mode}**: {MODE_INFO[mode].summary}" + (f" {state.pop('_mode_note')}" if "_mode_note" in state
                                                            else ""))
    layer_note = {"span_match": "word and context matched at layer 0 (token embeddings)",
                  "token_match": f"token keys at layer {cal.token_layer}",
                  "dual_key": f"symbol layer {cal.symbol_layer}, context layer {cal.context_layer}"}

    results = st.empty()  # one slot for every result below: an element, then a new block, drops the old results
    results.caption("…")
    with results.container():
        show_results(question, mark_word, mark_context, mode, alpha, threshold, layer, more, n_gen,
                     layer_note.get(mode, f"key layer {layer}"))


def show_results(question, mark_word, mark_context, mode, alpha, threshold, layer, more, n_gen, layer_text):
    busy = st.empty()
    busy.info(f"Computing the answer to: {md(question)}", icon=":material/hourglass_top:")
    keyed = None
    try:
        keyed = lab.key_question(question, mark_word or None, mark_context or None)
    except FastmemError:
        pass  # the same error is shown below

    try:
        use_bank = lab.keyed_at(bank, int(layer))
        # keyed above, before the marks were drawn; keying again only raises its error for the box below
        prompts = [keyed.prompt if keyed is not None else lab.parse_question(question, mark_word or None,
                                                                              mark_context or None)]
        prompts += [lab.parse_question(q) for q in more if q != question]
        start = time.perf_counter()
        first = lab.ask(use_bank, prompts[0], mode=mode, alpha=alpha, threshold=threshold)
        elapsed = time.perf_counter() - start
        others = [lab.ask(use_bank, p, mode=mode, alpha=alpha, threshold=threshold) for p in prompts[1:]]
    except FastmemError as exc:
        busy.error(md(exc))
        return
    busy.empty()
    r = first
    entries = [charts.entry_label(e.word, e.context, e.label) for e in use_bank.entries]
    off = [i for i in range(len(use_bank)) if not use_bank.is_enabled(i)]

    top = next(iter(r.found.values())) if r.found else None
    st.markdown(token_html(r.encoded, top), unsafe_allow_html=True)
    if top is not None:
        st.caption(found_line(top))
    a, b = st.columns(2)
    for column, title, answer in ((a, "Answer without memory", r.base_answer), (b, "Answer with memory", r.answer)):
        column.metric(title, md(vis(answer)))
        meaning = lab.demo.special_words(answer)
        if meaning:
            column.caption(f"Not a word: the model's {meaning} token{'s' * (',' in meaning)}.")
    with st.container(key="reason_box"):
        show_reason(r)
    settings = f"mode {r.mode}, α={r.alpha:g}, threshold={r.threshold}, {layer_text}; " \
               f"answered in {elapsed * 1000:.0f} ms"
    timing = st.empty()
    timing.caption(settings)
    # The answer is on screen now; the continuations (n_gen forward steps) fill these in at the end.
    g1, g2 = st.columns(2)
    with g1.container(key="gen_base_box"):
        st.markdown("**Greedy generation without memory**")
        gen_base = st.empty()
    with g2.container(key="gen_mem_box"):
        st.markdown("**Greedy generation with memory**")
        gen_mem = st.empty()
    gen_base.caption("generating…")
    gen_mem.caption("generating…")

    if len(use_bank):
        if others:
            matrix = [r.scores.tolist()] + [o.scores.tolist() for o in others]
            st.altair_chart(charts.score_heatmap([p.text for p in prompts], entries, matrix), width="stretch")
            st.dataframe(pd.DataFrame([{"question": o.prompt.text, "without": vis(o.base_answer),
                                        "with memory": vis(o.answer), "why": o.reason} for o in [r] + others]),
                         hide_index=True, width="stretch")
        else:
            with st.container(key="retrieval_box"):
                st.altair_chart(charts.score_bars(entries, r.scores.tolist(), r.chosen, r.threshold, k=10,
                                                  disabled=off), width="stretch")
    t1, t2, t3 = st.columns(3)
    with t1.container(key="promoted_box"):
        if r.chosen >= 0:
            label_tokens = lab.lm.token_text(use_bank.entries[r.injected].label_ids)
            tabs = st.tabs([f"token {j + 1}: {md(vis(t))}" for j, t in enumerate(label_tokens)]) \
                if len(label_tokens) > 1 else [st.container()]
            for j, tab in enumerate(tabs):  # every label token has its own correction
                with tab:
                    st.altair_chart(charts.token_bars(lab.demo.correction_tokens(r.values[j] * r.alpha, 8),
                                                      "Tokens the correction promotes" + (
                                                          f" (label token {j + 1})" if len(tabs) > 1 else ""),
                                                      "#2e9d5b", x_title="logit added (α · W_U v)"),
                                    width="stretch")
            source = r.injected
            e = use_bank.entries[source]
            rank_key = (e.slot, e.label, e.write_text, use_bank.value_steps)  # a forward pass: once per entry
            cache = state.setdefault("_label_ranks", {})
            if rank_key not in cache:
                cache[rank_key] = lab.demo.label_ranks(use_bank, source, (1, use_bank.value_steps))
            ranks = cache[rank_key]
            st.caption(f"Rank of {md(vis(' ' + use_bank.entries[source].label))}'s first token in W_U v: "
                       + ", ".join(f"#{rank:,} with {n} step{'s' * (n > 1)}" for n, rank in ranks.items())
                       + ". One step often leaves other tokens ahead on a tied-embedding model; refining fixes it.")
        else:
            st.caption("No correction injected.")
    before, after = lab.demo.top_tokens(r.base_logits, 8), lab.demo.top_tokens(r.logits, 8)
    domain = charts.shared_domain(before, after)  # one scale: bar lengths compare across the two charts
    with t2.container(key="before_box"):
        st.altair_chart(charts.token_bars(before, "Next token before", domain=domain), width="stretch")
    with t3.container(key="after_box"):
        st.altair_chart(charts.token_bars(after, "Next token after", "#e67e22", domain=domain), width="stretch")

    if r.found:
        with st.container(key="depth_box"):
            profile_key = (r.prompt, tuple(sorted(r.found)), tuple(e.slot for e in use_bank.entries))
            cache = state.setdefault("_layer_profiles", {})
            if profile_key not in cache:
                cache.clear()
                cache[profile_key] = lab.demo.layer_profile(use_bank, r)
            if cache[profile_key]:
                # its height given here: left to the chart, the title and legends took it all and the plot was flat
                st.altair_chart(charts.layer_profile_chart(cache[profile_key], r.threshold), width="stretch",
                                height=360)
                st.caption("How well each entry's word and context match the spans found in the question, layer "
                           "by layer: siblings (level 4 / level 1) and look-alikes (flicket / blicket) part at layer "
                           "0 and drift together deeper in, which is why slot-free reading compares layer 0.")

    view = ShareView(mode=r.mode, alpha=float(alpha), threshold=threshold, question=question,
                     mark_word=mark_word, mark_context=mark_context)
    st.download_button("Share this view (JSON: memory + settings)", data=lab.demo.share(bank, view),
                       file_name="fastmem-view.json", mime="application/json", key="share_download", on_click="ignore",
                       help="Open it below (or on another machine with the same model) to get this view back.")

    start = time.perf_counter()
    r = lab.continue_answer(r, n_gen)
    gen_ms = (time.perf_counter() - start) * 1000
    gen_base.code(vis(r.base_generation), language=None, wrap_lines=True)
    gen_mem.code(vis(r.generation), language=None, wrap_lines=True)
    timing.caption(f"{settings}, {n_gen} generated tokens in {gen_ms:.0f} ms")


inspector()

with st.expander("Open a shared view (JSON)"):
    shared = st.file_uploader("Share file", type=["json"], key="share_upload",
                              help="Replaces your memory and the settings above with the file's.")
    if shared is not None and st.button("Open this view", key="share_open"):
        try:
            new_bank, view = lab.demo.open_share(shared.getvalue())
        except FastmemError as exc:
            st.error(f"Not opened, nothing changed: {md(exc)}")
        else:
            state["bank"] = new_bank
            state["_pending_view"] = view
            st.rerun()
