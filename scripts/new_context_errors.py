"""Why the post's modes read fewer bindings in new contexts: which entry each read question retrieved.

For every experiment of the built-in suite, the test words are written in both of its contexts (`Lab.write`,
the experiment's own statement form) and each binding is asked with the experiment's read question
(`Lab.ask`, the mode's `post` operating point). Each answer is sorted by the entry that was chosen:

  right        the entry written for this word in this context
  other ctx    the same word's entry in the other context (its label is the other one)
  other word   another word's entry
  none         nothing passed the threshold

    python scripts/new_context_errors.py [--model smollm2] [--modes both_top1 context_gate] [--words 64]
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fastmem.eval.suite import bindings
from fastmem.lab import Lab

KINDS = ("right", "other ctx", "other word", "none")


def kind_of(bank, chosen: int, word: str, context: str) -> str:
    if chosen < 0:
        return "none"
    entry = bank.entries[chosen]
    if entry.word != word:
        return "other word"
    return "right" if entry.context == context else "other ctx"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--modes", nargs="+", default=["both_top1", "context_gate"])
    ap.add_argument("--words", type=int, default=64)
    args = ap.parse_args()
    lab = Lab.load(args.model)
    words = lab.suite.split("test")[:args.words]
    print(f"{args.model}, test words {len(words)}, point post; share of read questions by the entry retrieved")
    print("| experiment | mode | " + " | ".join(KINDS) + " | read (label right) |")
    print("|---|---|" + "---|" * (len(KINDS) + 1))
    for experiment in lab.suite.experiments:
        written = bindings(experiment, words)
        bank = lab.new_memory()
        lab.write(bank, [(b.word, b.context, b.label) for b in written], template=experiment.write)
        for mode in args.modes:
            kinds, right = Counter(), 0
            for b in written:
                r = lab.ask(bank, b.read, mode=mode, point="post")
                kinds[kind_of(bank, r.chosen, b.word, b.context)] += 1
                right += r.answer.strip() == b.label.strip()
            n = len(written)
            print(f"| {experiment.name} | {mode} | " + " | ".join(f"{kinds[k] / n:.3f}" for k in KINDS)
                  + f" | {right / n:.3f} |")


if __name__ == "__main__":
    main()
