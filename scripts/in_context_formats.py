"""Which prompt format the in-context baselines use, chosen on training words (never test words).

`python scripts/in_context_formats.py` prints, for 12 training words written in game A and game B, how often
the first answer token is the label under three formats: the bare statements, an instruction line before them,
and the module's format (`fastmem.memory.in_context.DEMO`: one demonstration binding and one answered question).
"""
from __future__ import annotations

import random

import torch

from fastmem.model.decode import answer_states
from fastmem.memory.in_context import DEMO
from fastmem.memory.forms import READ_TEMPLATE
from fastmem.lab import Lab
from fastmem.memory.prompts import render
from fastmem.eval.suite import LABELS

FORMATS = {
    "bare statements": lambda facts: facts,
    "instruction line": lambda facts: ["Answer each question in one word, using these facts."] + facts,
    "demonstration (in_context.DEMO)": lambda facts: [DEMO[0], *facts, DEMO[1]],
}


def main() -> None:
    lab = Lab.load("smollm2")
    lm, tok, rng = lab.lm, lab.lm.tokenizer, random.Random(0)
    binds = [(w.word, c, label) for w in lab.suite.split("train")[:12]
             for c, label in zip(("game A", "game B"), rng.sample(LABELS, 2))]
    print(f"{lm.name}, 12 training words x 2 contexts, first answer token = label")
    for name, fmt in FORMATS.items():
        for scope in ("word", "all"):
            rows = []
            for w, c, _ in binds:
                facts = [f"In {bc}, {bw} means {bl}." for bw, bc, bl in binds if scope == "all" or bw == w]
                rows.append(tok("\n".join(fmt(facts)) + "\n")["input_ids"]
                            + tok(render(READ_TEMPLATE, w, c).text, add_special_tokens=False)["input_ids"])
            ids = lm.logits(torch.cat(answer_states(lm, rows, [1] * len(rows)))).argmax(-1)
            hits = sum(int(i) == lm.label_tokens(label)[0] for i, (_, _, label) in zip(ids, binds))
            print(f"{name:32s} in_context_{scope:5s} {hits:2d}/{len(binds)}")


if __name__ == "__main__":
    main()
