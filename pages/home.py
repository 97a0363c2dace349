"""How it works: the mechanism in a few sentences and one worked example, run live."""
import streamlit as st

from fastmem import DEFAULT_MODE
from pages._shared import bank_for, bank_matches, page_lab, vis

lab = page_lab()
st.title("Fast memory for a frozen language model")
st.markdown(
    """
A frozen causal LM gets an **external key/value memory**; its weights never change.

* **Write** a statement such as `In game A, blicket means red`. The *key* is the model's hidden state at the
  invented word; the *value* is a correction vector in the residual stream,
  `W_U[target] − softmax(W_U h) · W_U`, refined by a few extra steps, that pushes the next token towards ` red`.
* **Read** a question such as `Question: in game A, what is blicket? Answer:`. The question's own hidden states
  are compared with every key, the best entry (top-1) is retrieved, and `α · value` is added to the final
  hidden state (after the final norm) at the answer position. The model then answers ` red`.
* The default mode, **token_match**, asks every token of the word *and* of the context in the question to match a
  written entry's (standardised early-layer hidden states; an entry scores the weaker of its two matches). The
  same word can then mean different things in different contexts (game A vs game B), while a look-alike word, a
  context that was never written and unrelated questions are left alone. **dual_key** (symbol similarity ×
  context similarity) and the post's modes can be chosen on the Inspect and Benchmark pages.
* *Why not just put the statements in the prompt?* The Benchmark page measures exactly that (**in_context_all**,
  **in_context_word**) and a GRACE-style **codebook**, on the same questions: on this small model the prompt
  reads worse, leaks the label into contexts never written, and grows with every binding until it no longer
  fits; the memory's question stays the same length.
"""
)

DEMO = [("blicket", "game A", "red"), ("blicket", "game B", "blue")]
# Questions the memory should leave alone: (what it shows, word, context), from the failure-gallery preset.
LEFT_ALONE = [("wrong context: the written word in a context never written", "blicket", "game Z"),
              ("look-alike: an unwritten word that looks like the written one", "flicket", "game A")]


@st.cache_resource(show_spinner=False)
def demo(model_name: str, _lab):
    """Both bindings written, then the two written questions and the two the memory should leave alone."""
    bank = _lab.new_memory()
    _lab.write(bank, DEMO)
    answered, left = [], []
    for word, context, label in DEMO:
        r = _lab.ask(bank, _lab.question(word, context), max_new_tokens=4)
        answered.append({"question": r.prompt.text, "expected": vis(" " + label),
                         "without memory": vis(r.base_answer), "with memory": vis(r.answer),
                         "generation with memory": vis(r.generation), "retrieved": r.reason})
    for kind, word, context in LEFT_ALONE:
        r = _lab.ask(bank, _lab.question(word, context))
        left.append({"kind": kind, "question": r.prompt.text, "without memory": vis(r.base_answer),
                     "with memory": vis(r.answer), "injected": r.chosen >= 0, "reason": r.reason})
    return answered, left


st.subheader("Worked example (live)")
st.markdown("Memory: `In game A, blicket means red` and `In game B, blicket means blue`.")
with st.spinner("Writing two bindings and asking four questions…"):
    rows, left = demo(lab.lm.name, lab)
st.dataframe(rows, hide_index=True, width="stretch")
for r in rows:
    st.markdown(f"**{r['question']}** → without memory `{r['without memory']}`, with memory "
                f"`{r['with memory']}`", help=r["retrieved"])
st.caption(f"Model {lab.lm.name}; mode {DEFAULT_MODE} (the default) with its calibrated α and threshold. "
           "`␣` marks a leading space.")

st.subheader("Questions the memory should leave alone (live)")
st.markdown("The same memory, asked about a context that was never written and about a word that was never "
            "written but looks like one that was. A selective memory injects nothing here; whatever the "
            "library answers is shown as is.")
for r in left:
    box = st.warning if r["injected"] else st.info
    verdict = "**the memory stepped in**" if r["injected"] else "left alone"
    box(f"**{r['kind'].capitalize()}** — `{r['question']}` → without memory `{r['without memory']}`, with memory "
        f"`{r['with memory']}`: {verdict}. {r['reason']}")

bank = bank_for(lab)
if bank_matches(lab, bank) and st.button("Add these two bindings to my memory", key="home_add_demo"):
    lab.write(bank, DEMO)
    st.success("Added. Open the Inspect page to look inside.")
st.page_link("pages/memory.py", label="Write your own bindings →", icon=":material/database:")
st.page_link("pages/inspect.py", label="Inspect a question →", icon=":material/search:")
