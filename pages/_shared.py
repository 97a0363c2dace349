"""Streamlit helpers shared by the pages: the cached model, the user's memory, the sidebar."""
from __future__ import annotations

import html
import os
import re
import time

import streamlit as st

from fastmem import DEFAULT_MODEL, OFFLINE_ALIAS, FastmemError, Lab, MemoryBank
from fastmem.demo.text import md
from fastmem.model.loading import app_model_spec

CUSTOM = "Other (Hugging Face id, local folder or .gguf)…"  # local: under the model folder (app_model_spec)
CHOICES = [DEFAULT_MODEL, OFFLINE_ALIAS, CUSTOM]
PRELOADED: dict[tuple[str, str], Lab] = {}  # (spec, weights) -> Lab already loaded in this process (tests share theirs)
WEIGHTS = {"auto": "auto", "float32": "float32", "bfloat16": "bfloat16"}
WEIGHTS_HELP = ("The model's weights' number type; auto: float32 on a CPU, bfloat16 on a GPU. bfloat16 halves their memory, but on a CPU without fast bfloat16 "
                "it runs several times slower than float32, and its first use calibrates anew (minutes on 2 "
                "cores). Answers of the default mode did not change in bfloat16 (README: bfloat16).")


@st.cache_resource(show_spinner=False, max_entries=4)
def load_lab(spec: str, weights: str = "auto") -> tuple[Lab | None, str | None, float]:
    """Load once per process and share read-only: (lab, error message, seconds). Failures are cached too,
    so an unreachable default model costs its timeout once, not on every rerun."""
    start = time.perf_counter()
    if (spec, weights) in PRELOADED:
        return PRELOADED[spec, weights], None, 0.0
    try:
        lab = Lab.load(spec, device=os.environ.get("FASTMEM_DEVICE", "auto"), dtype=weights)
        return lab, None, time.perf_counter() - start
    except FastmemError as exc:
        return None, str(exc), time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - anything else from a third-party loader: still no traceback
        return None, f"Cannot load '{spec}': {type(exc).__name__}: {exc}", time.perf_counter() - start


def default_input(key: str, value):
    """A kept input's first value (set once; the widget is then drawn without `value=`)."""
    return st.session_state.setdefault(key, value)


def _checked_spec() -> tuple[str, str | None]:
    """(what to load, why the typed model is refused). The Other box takes only what `app_model_spec` allows
    (a visitor's text); a model chosen from the list, or set by $FASTMEM_MODEL, loads as it is."""
    choice = st.session_state.get("model_choice", os.environ.get("FASTMEM_MODEL", DEFAULT_MODEL))
    if choice != CUSTOM:
        return choice, None
    typed = (st.session_state.get("model_custom") or "").strip()
    if not typed:
        st.sidebar.info("Type a Hugging Face id, or a folder or .gguf file under the app's model folder.")
        return OFFLINE_ALIAS, None
    try:
        return app_model_spec(typed), None
    except FastmemError as exc:
        return OFFLINE_ALIAS, str(exc)


def current_lab() -> Lab | None:
    """The model for this session, with the visible fallback to smollm2 when the default is unreachable."""
    spec, refused = _checked_spec()
    if refused:
        st.sidebar.error(f"{md(refused)} Using the offline model **{OFFLINE_ALIAS}** instead.")
    weights = st.session_state.get("model_weights", "auto")
    with st.spinner(f"Loading {md(spec.removeprefix('hub:'))}, {weights} weights (first time only)…"):
        lab, error, _ = load_lab(spec, weights)
    if lab is None:
        if spec == DEFAULT_MODEL:
            st.sidebar.warning(fallback_notice(spec, error), icon="⚠️")
        else:
            st.sidebar.error(fallback_notice(spec, error))
        with st.spinner(f"Loading {OFFLINE_ALIAS}…"):
            lab, error, _ = load_lab(OFFLINE_ALIAS, weights)
        if lab is None:
            st.error(f"No model could be loaded: {md(error)}")
            return None
        spec = OFFLINE_ALIAS
    st.session_state["_resolved_spec"] = spec
    return lab


def fallback_notice(spec: str, error: str | None) -> str:
    """One notice for a model that cannot be loaded: why, then (once) that the offline model is used.
    The loader's own advice to use the offline model is dropped, so the notice does not say it twice."""
    why = re.sub(r"\s*Use the offline model\b[^.]*\.?", "", error or "").strip().rstrip(".")
    if spec == DEFAULT_MODEL:
        rest = re.sub(rf"^Cannot load '{re.escape(spec)}':\s*", "", why)
        why = f"The default model {spec} cannot be loaded here" + (f": {rest}" if rest else "")
    # the reason holds what was typed in the box: escaped, so only the app's own words are markdown
    return f"{md(why or f'Cannot load {spec!r}')}. Using the offline model **{OFFLINE_ALIAS}** instead."


def page_lab() -> Lab:
    """The model app.py resolved for this run (pages never show the loading notices again)."""
    spec = st.session_state.get("_resolved_spec") or OFFLINE_ALIAS
    lab = load_lab(spec)[0]
    if lab is None:
        st.stop()
    return lab


def bank_for(lab: Lab) -> MemoryBank:
    """This session's memory (created on first use)."""
    if "bank" not in st.session_state:
        st.session_state["bank"] = lab.new_memory()
    return st.session_state["bank"]


def bank_matches(lab: Lab, bank: MemoryBank) -> bool:
    return bank.model_name == lab.lm.name and bank.hidden_size == lab.lm.hidden_size


def require_bank(lab: Lab) -> MemoryBank | None:
    """The memory when it fits the loaded model, else an explanation (and None); the memory is kept."""
    bank = bank_for(lab)
    if bank_matches(lab, bank):
        return bank
    st.warning(f"Your memory ({len(bank)} entries) belongs to **{md(bank.model_name)}** (hidden size "
               f"{bank.hidden_size}); the loaded model is **{md(lab.lm.name)}** (hidden size {lab.lm.hidden_size}). "
               "It is kept: switch back to that model, download it on the Memory page, or start a new one.")
    if st.button("Start a new, empty memory for this model (drops the old one)", key="new_bank_for_model"):
        st.session_state["bank"] = lab.new_memory()
        st.rerun()
    return None


def sidebar(lab: Lab | None) -> None:
    with st.sidebar:
        st.caption("Memory")
        if lab is None:
            return
        bank = bank_for(lab)
        if bank_matches(lab, bank):
            st.metric("Entries", len(bank))
            for e in bank.entries[:8]:
                st.caption(md(f"{e.word} · {e.context} → {vis(e.label)}"))
            if len(bank) > 8:
                st.caption(f"… and {len(bank) - 8} more")
        else:
            st.warning(md(f"Memory of {bank.model_name} ({len(bank)} entries), kept; not usable with {lab.lm.name}."))
        cal = lab.calibration
        weights = str(lab.lm.dtype).removeprefix("torch.")
        st.caption(f"{md(lab.lm.name)} ({weights} weights): {lab.lm.n_layers} layers, d={lab.lm.hidden_size}; span_match (the default) "
                   f"reads layer 0, token_match layer {cal.token_layer}; word keys at layer {cal.key_layer}, "
                   f"symbol {cal.symbol_layer}, context {cal.context_layer}.")


def model_picker() -> None:
    with st.sidebar:
        st.selectbox("Model", CHOICES, key="model_choice",
                     index=CHOICES.index(os.environ.get("FASTMEM_MODEL", DEFAULT_MODEL))
                     if os.environ.get("FASTMEM_MODEL", DEFAULT_MODEL) in CHOICES else 0)
        if st.session_state.get("model_choice") == CUSTOM:
            st.text_input("Model id, or a folder or .gguf under the model folder", key="model_custom",
                          placeholder="e.g. HuggingFaceTB/SmolLM2-135M or x.gguf",
                          help="A Hugging Face id (owner/name), or the name of a model folder or .gguf file "
                               "under the app's model folder (the cache's models folder, or $FASTMEM_MODEL_ROOT).")
        st.selectbox("Weights", list(WEIGHTS), key="model_weights", format_func=WEIGHTS.get, help=WEIGHTS_HELP)


def vis(token: str) -> str:
    """A token with visible whitespace: ' red' -> '␣red'."""
    return token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅"


def token_html(encoded, found=None) -> str:
    """Prompt tokens as chips; word tokens, context tokens and the answer position highlighted. `found`
    (`fastmem.memory.explain.Found`): where slot-free reading found the best entry's word and context, with scores;
    without it, the question's slots."""
    def span(tokens):
        return set(range(tokens[0], tokens[1] + 1)) if tokens else set()

    if found is not None:
        word, context = span(found.word_tokens), span(found.context_tokens)
        word_note, context_note = f"word, match {found.word_score:.2f}", f"context, match {found.context_score:.2f}"
    else:
        word, context = set(encoded.word_positions), set(encoded.context_positions)
        word_note, context_note = "word", "context"
    chips = []
    for i, tok in enumerate(encoded.tokens):
        style = "background:#eef0f6;"
        title = f"token {i}"
        if i in word:
            style, title = "background:#ffe08a;font-weight:600;", f"token {i}: {word_note}"
        elif i in context:
            style, title = "background:#cfe3ff;", f"token {i}: {context_note}"
        if i == encoded.answer_position:
            style += "outline:2px solid #2e9d5b;"
            title += " · answer position"
        chips.append(f'<span title="{title}" style="{style}padding:2px 4px;margin:2px;border-radius:4px;'
                     f'font-family:monospace;display:inline-block">{html.escape(vis(tok))}</span>')
    legend = ('<div style="font-size:0.8em;color:#555;margin-top:4px">'
              '<span style="background:#ffe08a;padding:0 4px">word</span> '
              '<span style="background:#cfe3ff;padding:0 4px">context</span> '
              '<span style="outline:2px solid #2e9d5b;padding:0 4px">answer position</span></div>')
    return '<div class="fm-tokens">' + "".join(chips) + "</div>" + legend
