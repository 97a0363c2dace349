"""How often the Memory page's first guess (`fastmem.propose`) finds the word, the context and the label of a
statement typed in a free form. The statement forms here appear nowhere else in the project.

    python scripts/propose_eval.py            # SmolLM2; prints per-field and whole-statement rates
"""
import random

from fastmem.model.lm import FrozenLM
from fastmem.demo.propose import propose
from fastmem.eval.suite import nonce_words

FORMS = [
    "Over in {context}, people use {word} to mean {label}",
    "In {context}, {word} means {label}",
    "Among {context}, {word} stands for {label}",
    "At {context}, the word {word} refers to {label}",
    "{word} means {label} in {context}",
    "According to {context}, {word} is {label}",
    "On {context} they say {word} when they mean {label}",
    "For {context}, a {word} is {label}",
    "When you are in {context}, {word} means {label}.",
    "In {context} the word {word} is used to mean {label}",
]
CONTEXTS = ["level 3", "the north lab", "game B", "planet Vex", "the sailors", "room 12", "the old castle",
            "Mia", "the blue team", "chapter two"]
LABELS = ["a cold drink", "red", "a small dog", "the moon", "fish", "a glass of milk", "blue", "an old map"]


def main(n: int = 60, seed: int = 5) -> None:
    lm = FrozenLM.load("smollm2", "cpu")
    rng = random.Random(seed)
    words = nonce_words(400, seed + 99)[300:300 + n]
    right = {"word": 0, "context": 0, "label": 0, "all": 0}
    for i, word in enumerate(words):
        form, context, label = FORMS[i % len(FORMS)], rng.choice(CONTEXTS), rng.choice(LABELS)
        statement = form.format(word=word, context=context, label=label)
        got = propose(lm, statement)
        ok = {"word": got.word == word, "context": got.context == context, "label": got.label == label}
        for k, v in ok.items():
            right[k] += v
        right["all"] += all(ok.values())
        if not all(ok.values()):
            print(f"  {statement!r} -> word {got.word!r}, context {got.context!r}, label {got.label!r}")
    print(f"SmolLM2, seed {seed}, n = {n} statements in {len(FORMS)} forms:")
    for k, v in right.items():
        print(f"  {k:8s} {v}/{n} = {v / n:.3f}")


if __name__ == "__main__":
    main()
