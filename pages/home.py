"""How it works: the mechanism in a few sentences and one worked example, run live."""
import streamlit as st

from fastmem import DEFAULT_MODE
from fastmem.demo.text import md, md_code
from pages._shared import bank_for, bank_matches, page_lab, vis

lab = page_lab()
st.title("Fast memory for a frozen language model")
st.markdown(
    """
**The idea.** A small language model reads one sentence, *In game A, blicket means red*, and from then on
answers *red* when asked what blicket means in game A, and *blue* in game B if that was written too. Its
weights never change. The sentence is stored outside the model as one entry of a memory: a **key** (how to
recognise a question about blicket in game A) and a **value** (a nudge towards the answer). When a question
matches a key, the nudge is added where the model chooses its next word. When nothing matches (another
context, a word that only looks similar, any other question) nothing is added and the model answers as before.
"""
)
st.graphviz_chart(
    """
digraph {
  rankdir=LR; node [shape=box, style="rounded,filled", fillcolor="#f4f6f8", fontname="sans-serif"];
  write [label="write\nIn game A, blicket means red"]; model1 [label="frozen model\n(one forward pass)"];
  entry [label="memory entry\nkey: blicket + game A\nvalue: nudge towards red", fillcolor="#e8f4ea"];
  ask [label="ask\nWhat does blicket mean in game A?"]; model2 [label="frozen model\n(one forward pass)"];
  answer [label="answer\nred", fillcolor="#fdf2e3"];
  write -> model1 -> entry; ask -> model2; model2 -> entry [label="match the key", style=dashed];
  entry -> answer [label="add the value"]; model2 -> answer;
}
""",
    width="stretch",
)
with st.expander("The mechanism in formulas"):
    st.markdown(
        """
* **Value.** With `h` the model's final hidden state (after its final norm) where the label is predicted and
  `W_U` its output embedding, the value is `v = W_U[red] − softmax(W_U h) · W_U`: minus the gradient of the
  cross-entropy loss with respect to `h`. A few more such steps, through the output head only, refine it.
* **Read.** The answer's logits become `W_U (h + α v) = W_U h + α W_U v` for the retrieved entry: no weight
  changes and no hook on the model.
* **Keys.** The default mode, **span_match**, finds each written word and context anywhere in the question as
  typed, in order and at word boundaries, from the token embeddings of their surface forms (`Blicket`,
  `the game A` match; `level 4` does not match `level 1`). An entry is used only when both its word and its
  context are found above the calibrated threshold. The other modes (chosen on Inspect and Benchmark, each
  described there) are the reference experiment's and the baselines'.
"""
    )
with st.expander("The experiment this lab reproduces"):
    st.markdown(
        """
A published toy experiment (the reference post, in `shared/seed/` of this project) gave frozen **Pythia-70M**
such a memory and wrote nonce words in two contexts (`blicket` is red in game A, blue in game B). Its main
mode (**both_top1**: one memory for all contexts, the best match of a small learned key) read the right label
for **0.805** of the test bindings; an oracle that looks only at the question's own context (**context_gate**)
0.801; raw hidden states as keys (**raw_both_top1**) 0.180; averaging every value of the word (**average**)
0.309. In new contexts, game C/D read 0.602 and the north/south lab 0.340. The Benchmark page runs the same
protocol and shows these figures beside this model's; it also asks what the post did not: questions typed in
other words, contexts never written, look-alike words and facts the model already knew.
"""
    )
st.markdown(
    """
*Why not just put the statements in the prompt?* The Benchmark page measures that too (**in_context_all**,
**in_context_word**) and a GRACE-style **codebook**, on the same questions.
"""
)

DEMO = [("blicket", "game A", "red"), ("blicket", "game B", "blue")]
# Questions the memory should leave alone: (what it shows, word, context), from the failure-gallery preset.
LEFT_ALONE = [("wrong context: the written word in a context never written", "blicket", "game Z"),
              ("look-alike: an unwritten word that looks like the written one", "flicket", "game A")]
TYPED = "What does {word} mean in {context}?"  # typed as a person would: no template, no marks


@st.cache_resource(show_spinner=False)
def demo(model_name: str, _lab):
    """Both bindings written, then the two written questions and the two the memory should leave alone."""
    bank = _lab.new_memory()
    _lab.write(bank, DEMO)
    answered, left = [], []
    for word, context, label in DEMO:
        r = _lab.ask(bank, TYPED.format(word=word, context=context), max_new_tokens=4)
        answered.append({"question": r.prompt.text, "expected": vis(" " + label),
                         "without memory": vis(r.base_answer), "with memory": vis(r.answer),
                         "generation with memory": vis(r.generation), "retrieved": r.reason})
    for kind, word, context in LEFT_ALONE:
        r = _lab.ask(bank, TYPED.format(word=word, context=context))
        left.append({"kind": kind, "question": r.prompt.text, "without memory": vis(r.base_answer),
                     "with memory": vis(r.answer), "injected": r.chosen >= 0, "reason": r.reason})
    return answered, left


st.subheader("Worked example (live)")
st.markdown("Memory: `In game A, blicket means red` and `In game B, blicket means blue`.")
with st.spinner("Writing two bindings and asking four questions…"):
    rows, left = demo(lab.lm.name, lab)
st.dataframe([{k: v for k, v in r.items() if k != "retrieved"} for r in rows], hide_index=True, width="stretch")
for r in rows:
    st.markdown(f"**{md(r['question'])}** → without memory {md_code(r['without memory'])}, with memory "
                f"{md_code(r['with memory'])}")
    st.caption(f"Why: {md(r['retrieved'])}")
st.caption(f"Model {md(lab.lm.name)}; mode {DEFAULT_MODE} (the default) with its calibrated α and threshold. "
           "`␣` marks a leading space.")

st.subheader("Questions the memory should leave alone (live)")
st.markdown("The same memory, asked about a context that was never written and about a word that was never "
            "written but looks like one that was. A selective memory injects nothing here; whatever the "
            "library answers is shown as is.")
for r in left:
    box = st.warning if r["injected"] else st.info
    verdict = "**the memory stepped in**" if r["injected"] else "left alone"
    box(f"**{r['kind'].capitalize()}** — {md_code(r['question'])} → without memory {md_code(r['without memory'])}, "
        f"with memory {md_code(r['with memory'])}: {verdict}. {md(r['reason'])}")

bank = bank_for(lab)
if bank_matches(lab, bank) and st.button("Add these two bindings to my memory", key="home_add_demo"):
    lab.write(bank, DEMO)
    st.success("Added. Open the Inspect page to look inside.")
st.page_link("pages/memory.py", label="Write your own bindings →", icon=":material/database:")
st.page_link("pages/inspect.py", label="Inspect a question →", icon=":material/search:")
