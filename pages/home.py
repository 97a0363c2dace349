"""How it works: the mechanism in a few sentences and one worked example, run live."""
import streamlit as st

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
* The default mode, **dual_key**, scores entries by *symbol similarity × context similarity*, so the same word can
  mean different things in different contexts (game A vs game B) and unrelated questions stay untouched.
"""
)

DEMO = [("blicket", "game A", "red"), ("blicket", "game B", "blue")]


@st.cache_resource(show_spinner=False)
def demo(model_name: str, _lab):
    bank = _lab.new_memory()
    _lab.write(bank, DEMO)
    out = []
    for word, context, label in DEMO:
        r = _lab.ask(bank, _lab.question(word, context), max_new_tokens=4)
        out.append({"question": r.prompt.text, "expected": vis(" " + label),
                    "without memory": vis(r.base_answer), "with memory": vis(r.answer),
                    "generation with memory": vis(r.generation), "retrieved": r.reason})
    return out


st.subheader("Worked example (live)")
st.markdown("Memory: `In game A, blicket means red` and `In game B, blicket means blue`.")
with st.spinner("Writing two bindings and asking two questions…"):
    rows = demo(lab.lm.name, lab)
st.dataframe(rows, hide_index=True, width="stretch")
for r in rows:
    st.markdown(f"**{r['question']}** → without memory `{r['without memory']}`, with memory "
                f"`{r['with memory']}`", help=r["retrieved"])
st.caption(f"Model {lab.lm.name}; mode dual_key with its calibrated α and threshold. `␣` marks a leading space.")

bank = bank_for(lab)
if bank_matches(lab, bank) and st.button("Add these two bindings to my memory", key="home_add_demo"):
    lab.write(bank, DEMO)
    st.success("Added. Open the Inspect page to look inside.")
st.page_link("pages/memory.py", label="Write your own bindings →", icon="🗂️")
st.page_link("pages/inspect.py", label="Inspect a question →", icon="🔍")
