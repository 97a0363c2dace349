"""Memory: write bindings, list/delete/clear entries, download and upload the memory file."""
import pandas as pd
import streamlit as st

from fastmem import FastmemError, ShareView, load_suite
from fastmem.demo.text import md
from pages._shared import bank_for, bank_matches, default_input, page_lab, vis

MAX_TOGGLES = 60  # switches drawn at once; a filter narrows larger memories

lab = page_lab()
bank = bank_for(lab)
usable = bank_matches(lab, bank)
st.title("Memory")
if not usable:
    st.warning(f"This memory belongs to **{md(bank.model_name)}** (hidden size {bank.hidden_size}), not to the loaded "
               f"**{md(lab.lm.name)}**. It is kept and can still be downloaded below.")
    if st.button("Start a new, empty memory for this model (drops the old one)", key="mem_new_for_model"):
        st.session_state["bank"] = lab.new_memory()
        st.rerun()


def report_rows(results) -> list[dict]:
    """The write report's rows (one per written row, errors included), kept in the session for display."""
    return [{"row": i + 1, "word": r.word, "context": r.context, "label": r.label, "status": r.status,
             "error": r.error or ""} for i, r in enumerate(results)]


def write_statement(statement, word, context, label, on_duplicate):
    """Write one free statement with its marks; its result shows like a one-row write."""
    try:
        result = lab.write_statement(bank, statement, word, context, label, on_duplicate,
                                     st.session_state.get("value_steps"))
    except FastmemError as exc:
        st.error(md(exc))
        return
    st.session_state["write_report"] = report_rows([result])


def propose_parts() -> None:
    """Fill the word, context and label fields with the model's guess for the typed statement (a callback:
    it runs before the fields are drawn, so they show the guess)."""
    state = st.session_state
    try:
        proposal = lab.demo.propose_statement(state.get("free_statement", ""))
    except FastmemError:
        state["free_proposal"] = None
        return
    state["free_proposal"] = proposal
    state["free_word"], state["free_context"], state["free_label"] = (
        proposal.word or "", proposal.context or "", proposal.label or "")


def write_rows(rows, on_duplicate, template=None):
    """Write rows with a progress bar; report each row's status (errors next to their row)."""
    rows = [tuple("" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v) for v in r) for r in rows]
    rows = [r for r in rows if any(x.strip() for x in r)]
    if not rows:
        st.session_state["write_report"] = None
        st.warning("Nothing to write: every row is empty.")
        return
    bar = st.progress(0.0, text=f"Writing {len(rows)} bindings…")
    done = [0]

    def progress(n):
        done[0] += n
        bar.progress(min(1.0, done[0] / len(rows)), text=f"Encoded {done[0]}/{len(rows)}")

    try:
        results = lab.write(bank, rows, template=template or lab.write_forms[0], on_duplicate=on_duplicate,
                            progress=progress,
                            value_steps=st.session_state.get("value_steps"))
    except FastmemError as exc:
        bar.empty()
        st.error(md(exc))
        return
    bar.empty()
    st.session_state["write_report"] = report_rows(results)


def preview(form: str, word: str, context: str, label: str) -> str:
    """The statement a form makes (or what is wrong with the form), shown before writing."""
    try:
        return lab.preview_statement(form, word or "…", context or "…", label or "…")
    except FastmemError as exc:
        return f"not a usable form: {exc}"


def show_report():
    report = st.session_state.get("write_report")
    if not report:
        return
    bad = [r for r in report if r["status"] == "error"]
    ok = len(report) - len(bad)
    (st.warning if bad else st.success)(f"Wrote {ok} of {len(report)} rows" + (f"; {len(bad)} with errors." if bad else "."))
    st.dataframe(pd.DataFrame(report), hide_index=True, width="stretch",
                 column_config={"error": st.column_config.TextColumn("error", width="large")})
    for r in bad:
        st.error(md(f"Row {r['row']} ({r['word']!r}, {r['context']!r}, {r['label']!r}): {r['error']}"))


def load_preset(key: str) -> None:
    try:
        results = lab.demo.load_preset(bank, key)
    except FastmemError as exc:
        st.error(md(exc))
        return
    st.session_state["write_report"] = report_rows(results)
    st.session_state["preset_loaded"] = key


def show_preset_questions() -> None:
    key = st.session_state.get("preset_loaded")
    presets = {p.key: p for p in lab.demo.presets}
    if key not in presets:
        return
    preset = presets[key]
    st.markdown(f"**Loaded: {preset.title}.** Suggested questions (each opens on the Inspect page):")
    for n, (q, prompt) in enumerate(lab.demo.preset_questions(preset)):
        c1, c2 = st.columns([3, 1])
        expect = f"expected: ␣{q.expect}" if q.expect else "expected: the memory stays silent"
        c1.markdown(f"`{prompt.text}` — {q.note} *({expect})*")
        if c2.button("Ask on Inspect", key=f"preset_ask_{key}_{n}"):
            st.session_state["_pending_view"] = ShareView(question=prompt.text)
            st.switch_page("pages/inspect.py")


@st.dialog("Replace your memory?")
def confirm_preset(preset) -> None:
    """A preset would replace a memory that holds bindings: ask first, and offer to save it."""
    st.markdown(f"Your memory holds **{len(bank)} binding{'s' * (len(bank) != 1)}**. Loading *{preset.title}* "
                "replaces them.")
    st.download_button("Download the current memory first", data=lab.export_memory(bank),
                       file_name=f"fastmem-{bank.model_name.replace('/', '_')}-{len(bank)}.safetensors",
                       mime="application/octet-stream", key="preset_backup", on_click="ignore")
    c1, c2 = st.columns(2)
    if c1.button("Replace it", type="primary", key="preset_confirm"):
        load_preset(preset.key)
        st.rerun()
    if c2.button("Keep my memory", key="preset_cancel"):
        st.rerun()


if usable:
    st.subheader("Preset scenarios")
    st.caption("A ready-made scenario and the questions worth asking. It replaces your memory: when the memory "
               "holds bindings, you are asked first and can download it.")
    cols = st.columns(len(lab.demo.presets))
    for col, preset in zip(cols, lab.demo.presets):
        with col:
            if st.button(preset.title, key=f"preset_{preset.key}", width="stretch"):
                if len(bank):
                    confirm_preset(preset)
                else:
                    load_preset(preset.key)
            st.caption(preset.description)
    show_preset_questions()

    st.subheader("Add bindings")
    st.caption("A binding is a statement: *In {context}, {word} means {label}*, or any form you choose below. "
               "The label may be a word or a short phrase (up to 8 tokens: `guinea pig`, `a glass of milk`); it "
               "is read with a leading space (`red` → `␣red`) and each of its tokens gets its own correction.")
    on_dup = st.radio("When a word is already bound in that context", ["replace", "keep"], horizontal=True,
                      key="on_duplicate", persist_state="session",
                      format_func=lambda x: {"replace": "replace the old entry", "keep": "keep the old entry"}[x])
    st.number_input("Value steps", 1, 64, value=bank.value_steps, key="value_steps",
                    help="1 = the post's one-step value W_U[label] − softmax(W_U h) @ W_U; more steps keep descending "
                         "the same loss through the output head. Inspect shows where the label ranks in W_U v for "
                         "one step and for the refined value.")
    tab_one, tab_free, tab_table, tab_text, tab_suite = st.tabs(
        ["One binding", "Free statement", "Table", "Paste lines", "From a suite file"])
    with tab_one:
        custom_choice = "Custom form…"
        form = st.selectbox("Statement form ({label} follows it)", lab.write_forms + [custom_choice],
                            key="one_form", persist_state="session",
                            help="The known forms, or your own with {word} and {context} slots.")
        if form == custom_choice:
            default_input("one_custom", "On planet {context}, the word {word} means")
            form = st.text_input("Custom form: {word} and {context} once each; the label follows",
                                 key="one_custom", persist_state="session")
        with st.form("add_one", clear_on_submit=False):
            c1, c2, c3 = st.columns(3)
            for key, value in (("one_word", "blicket"), ("one_context", "game A"), ("one_label", "red")):
                default_input(key, value)
            word = c1.text_input("Word", key="one_word", persist_state="session")
            context = c2.text_input("Context", key="one_context", persist_state="session")
            label = c3.text_input("Label", key="one_label", persist_state="session")
            st.caption(f"Statement: *{md(preview(form, word, context, label))}*")
            if st.form_submit_button("Write binding", type="primary"):
                write_rows([(word, context, label)], on_dup, template=form)
    with tab_free:
        st.caption("Type a statement in your own words. The memory proposes its word (the one the model finds "
                   "most surprising), its context and its label; correct them if needed, then write. The word and "
                   "the context must come before the label: the memory reads the statement up to the label.")
        if "free_statement" not in st.session_state:
            st.session_state["free_statement"] = "Over in level 3, people use zorp to mean a cold drink"
            propose_parts()
        st.text_input("Statement", key="free_statement", persist_state="session", on_change=propose_parts)
        proposal = st.session_state.get("free_proposal")
        if proposal is not None and proposal.surprisal:
            ranked = sorted(proposal.surprisal, key=lambda x: -x[1])[:3]
            st.caption("Most surprising words (−log p, nats): " + md(", ".join(f"{w} {c:.1f}" for w, c in ranked)))
        with st.form("add_free", clear_on_submit=False):
            c1, c2, c3 = st.columns(3)
            f_word = c1.text_input("Word in it", key="free_word", persist_state="session")
            f_context = c2.text_input("Context in it", key="free_context", persist_state="session")
            f_label = c3.text_input("Label in it", key="free_label", persist_state="session")
            if st.form_submit_button("Write statement", type="primary"):
                write_statement(st.session_state["free_statement"], f_word, f_context, f_label, on_dup)
    with tab_table:
        start = pd.DataFrame({"word": ["blicket", "blicket", "dax"], "context": ["game A", "game B", "game A"],
                              "label": ["red", "blue", "green"]})
        edited = st.data_editor(start, num_rows="dynamic", key="bind_editor", hide_index=True, width="stretch")
        if st.button("Write table rows", key="write_table"):
            write_rows(edited[["word", "context", "label"]].itertuples(index=False, name=None), on_dup)
    with tab_text:
        text = st.text_area("One binding per line: word, context, label", key="bind_lines",
                            persist_state="session", height=120,
                            placeholder="blicket, game A, red\nblicket, game B, blue")
        if st.button("Write lines", key="write_lines"):
            rows = []
            for line in text.splitlines():
                if line.strip():
                    parts = [p.strip() for p in line.split(",")]
                    rows.append(tuple(parts) if len(parts) == 3 else (line.strip(), "", ""))
            write_rows(rows, on_dup)
    with tab_suite:
        up = st.file_uploader("Suite file (JSON or YAML, the benchmark's format)", type=["json", "yaml", "yml"],
                              key="suite_for_memory")
        try:
            suite = load_suite(up.getvalue()) if up is not None else lab.suite
        except FastmemError as exc:
            st.error(f"The suite file is not valid: {md(exc)}")
            suite = None
        if suite is not None:
            st.caption(md(f"Suite '{suite.name}': {len(suite.words)} words, experiments "
                          f"{', '.join(e.name for e in suite.experiments)}."))
            exp_name = st.selectbox("Experiment", [e.name for e in suite.experiments], key="suite_exp",
                                    persist_state="session")
            default_input("suite_n", min(8, len(suite.words)))
            n = st.number_input("Words", 1, len(suite.words), key="suite_n", persist_state="session")
            if st.button("Write these bindings", key="write_suite"):
                exp = suite.experiment(exp_name)
                rows = [(w.word, ctx, w.labels[i]) for w in suite.words[:int(n)] for i, ctx in enumerate(exp.contexts)]
                write_rows(rows, on_dup)
    show_report()

def switch_key(word: str, context: str) -> str:
    return f"entry_on::{word}::{context}"


def set_entry(word: str, context: str) -> None:
    """Toggle callback: switch the entry of this slot on or off (looked up by slot, not by position)."""
    i = bank.find(word, context)
    if i is not None:
        bank.set_enabled(i, bool(st.session_state[switch_key(word, context)]))


def entry_switches(table) -> None:
    """LM-Debugger-style switches: an entry switched off stays in memory and in files but is never retrieved."""
    off = len(bank.disabled)
    st.markdown(f"**Switch entries on or off** ({len(bank) - off} on, {off} off). Switched-off entries stay in "
                "memory and in the file, but are never retrieved: ask on Inspect and watch the answer change.")
    shown = list(range(len(bank)))
    if len(bank) > MAX_TOGGLES:
        needle = st.text_input("Filter entries (word, context or label)", key="entry_filter").strip().lower()
        shown = [i for i in shown if needle in f"{bank.entries[i].word} {bank.entries[i].context} "
                                               f"{bank.entries[i].label}".lower()] if needle else shown
        st.caption(f"{min(len(shown), MAX_TOGGLES)} of {len(shown)} matching entries shown.")
    with st.container(height=320 if min(len(shown), MAX_TOGGLES) > 8 else "content", key="entry_switches"):
        for i in shown[:MAX_TOGGLES]:
            e = bank.entries[i]
            key = switch_key(e.word, e.context)
            st.session_state[key] = bank.is_enabled(i)  # the memory is the truth (presets, uploads, deletes)
            promoted = table[i]["promotes"]
            label = f"{e.word} · {e.context} → {vis(' ' + e.label)}"
            label += f"  (promotes {promoted})" if promoted else ""
            st.toggle(md(label), key=key, on_change=set_entry, args=(e.word, e.context))


st.subheader(f"Entries ({len(bank)})")
if len(bank) == 0:
    st.info("The memory is empty.")
else:
    table = []
    for row in lab.demo.entry_table(bank, 300 if usable else 0):
        table.append({**row, "on": "on" if row["on"] else "off", "label": vis(" " + row["label"]),
                      "promotes": " ".join(vis(t) for t in row["promotes"])})
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch", key="entries_table")
    if usable:
        entry_switches(table)
    c1, c2 = st.columns(2)
    with c1:
        pick = st.selectbox("Entry", range(len(bank)), key="entry_pick",
                            format_func=lambda i: f"{i}: {bank.entries[i].word} · {bank.entries[i].context} → "
                                                  f"{bank.entries[i].label}")
        if st.button("Delete this entry", key="delete_entry"):
            removed = bank.remove(int(pick))
            st.session_state["write_report"] = None
            st.toast(md(f"Deleted {removed.word} · {removed.context}"))
            st.rerun()
        st.caption("To replace an entry, write the same word and context again with “replace the old entry”.")
    with c2:
        sure = st.checkbox("Yes, delete every entry", key="clear_sure")
        if st.button("Clear all", key="clear_all", disabled=not sure):
            bank.clear()
            st.session_state["write_report"] = None
            st.session_state["clear_sure"] = False
            st.session_state.pop("preset_loaded", None)
            st.rerun()

st.subheader("Save and load")
st.download_button("Download memory (.safetensors)", data=lab.export_memory(bank),
                   file_name=f"fastmem-{bank.model_name.replace('/', '_')}-{len(bank)}.safetensors",
                   mime="application/octet-stream", key="download_memory")
upload = st.file_uploader("Upload a memory file (replaces the current memory)", type=["safetensors"],
                          key="upload_memory")
if upload is not None and st.button("Load this memory file" + (f" (replaces your {len(bank)} bindings)"
                                                                if len(bank) else ""), key="load_memory"):
    try:
        loaded, notes = lab.open_memory(upload.getvalue())
    except FastmemError as exc:
        st.error(f"Upload refused, your memory is unchanged: {md(exc)}")
    else:
        st.session_state["bank"] = loaded
        st.session_state["write_report"] = None
        st.session_state.pop("preset_loaded", None)
        st.session_state["upload_note"] = md(" ".join(
            [f"Loaded {len(loaded)} entries ({len(loaded.disabled)} switched off)."] + notes))
        st.rerun()
if st.session_state.get("upload_note"):
    st.success(st.session_state.pop("upload_note"))
