"""Memory files at scale: kB per binding, save and load time, and the same answers after the round trip.

At each size N the memory holds 64 real bindings (written with `Lab.write`: 32 invented words x game A/B) and
N - 64 filler bindings (other invented words, each with a real binding's value, made without a forward pass so
that 100,000 take seconds, not the 45 minutes writing them would). Then:
  save   `Lab.export_memory` (file format v4: values, label tokens' corrections, the statements; no keys);
  load   `Lab.open_memory` (every field checked) plus the first question, which builds the slot-free index;
  same   the real bindings asked in their context, 32 filler bindings and 32 never-written contexts, before
         and after: every answer, chosen entry and score equal;
  read   of the 64 real bindings asked as typed (`What does W mean in C?`), answered with their label, and
  fires  of the 32 questions in a never-written context (game Z), answered with anything from memory, with the
         median time of one question (`Lab.ask`: forward pass, slot-free search over every entry, injection)
  search and the median time of the slot-free search alone (`engine.lookup`, the call `Lab.ask` makes, on the
         question's states already computed), over the same questions.

    python scripts/file_sizes.py [--model smollm2] [--sizes 1000 10000 100000]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fastmem.lab import DEFAULT_MODE, Lab
from fastmem.memory.engine import lookup, prompt_states
from fastmem.memory.prompts import render
from fastmem.memory.forms import WRITE_TEMPLATE

REAL_WORDS = 32


def invented(rng: random.Random, n: int) -> list[str]:
    """n distinct pronounceable nonce words."""
    onsets, vowels, codas = "b d f g k l m n p r s t v z br dr fl gl kr pl sk st tr".split(), "a e i o u".split(), \
        "b d g k l m n p r s t x".split()
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(2)) + rng.choice(codas))
    return sorted(words)


def filled(lab: Lab, real, n: int, rng: random.Random):
    """A memory of `n` bindings: the real ones and fillers that reuse their values (no forward pass)."""
    bank = lab.new_memory()
    bank.add_many(real.entries)
    words = invented(rng, n)
    taken = {e.word for e in real.entries}
    fillers = []
    for i, word in enumerate(w for w in words if w not in taken):
        if len(fillers) + len(real) >= n:
            break
        source = real.entries[i % len(real)]
        prompt = render(WRITE_TEMPLATE, word, source.context)
        fillers.append(replace(source, word=word, write_text=prompt.text, word_span=prompt.word_span,
                               context_span=prompt.context_span))
    bank.add_many(fillers)
    return bank


def answers(lab: Lab, bank, questions, times=None) -> list[tuple]:
    out = []
    for q in questions:
        start = time.perf_counter()
        r = lab.ask(bank, q)
        if times is not None:
            times.append(time.perf_counter() - start)
        out.append((r.answer, r.chosen, round(r.best, 6)))
    return out


def search_times(lab: Lab, bank, questions) -> list[float]:
    """Seconds of the default mode's retrieval alone per question, its states computed beforehand."""
    bank = bank.snapshot()
    threshold = lab.calibration.settings(DEFAULT_MODE).threshold
    prompts = [lab.key_question(q).prompt for q in questions]
    states = [prompt_states(lab.lm, bank, [p]) for p in prompts]
    times = []
    for prompt, state in zip(prompts, states):
        start = time.perf_counter()
        lookup(lab.lm, DEFAULT_MODE, state, bank, lab.geometry, [prompt.context], threshold)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    lab = Lab.load(args.model)
    rng = random.Random(args.seed)
    words = [w.word for w in lab.suite.split("test")][:REAL_WORDS]
    labels = [w.labels for w in lab.suite.split("test")][:REAL_WORDS]
    real = lab.new_memory()
    lab.write(real, [(w, c, lab_[i]) for w, lab_ in zip(words, labels) for i, c in enumerate(("game A", "game B"))])
    print(f"{lab.lm.name}, seed {args.seed}; {len(real)} real bindings, the rest fillers")
    print("| bindings | file MB | kB / binding | save s | load s (open + first question) | same answers | read | "
          "game Z fires | ms / question (median) | search ms / question (median) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    expected = [" " + lab_[i] for lab_ in labels for i in range(2)]
    for n in args.sizes:
        bank = filled(lab, real, n, rng)
        fillers = [e for e in bank.entries if e.word not in set(words)][:32]
        questions = ([f"What does {w} mean in {c}?" for w in words for c in ("game A", "game B")]
                     + [f"In {e.context}, what is {e.word}?" for e in fillers]
                     + [f"What does {w} mean in game Z?" for w in words])
        lab.ask(bank, questions[0])  # builds the memory's derived tensors once, as the app's first question does
        times: list[float] = []
        before = answers(lab, bank, questions, times)
        search = search_times(lab, bank, questions)
        start = time.perf_counter()
        data = lab.export_memory(bank)
        saved = time.perf_counter() - start
        start = time.perf_counter()
        again, _ = lab.open_memory(data)
        lab.ask(again, questions[0])
        loaded = time.perf_counter() - start
        after = answers(lab, again, questions)
        same = sum(a == b for a, b in zip(before, after))
        read = sum(a[0] == e for a, e in zip(before, expected))
        fires = sum(a[1] >= 0 for a in before[len(expected) + len(fillers):])
        print(f"| {len(bank):,} | {len(data) / 1e6:.1f} | {len(data) / len(bank) / 1e3:.2f} | {saved:.1f} | "
              f"{loaded:.1f} | {same}/{len(questions)} | {read}/{len(expected)} | {fires}/{len(words)} | "
              f"{statistics.median(times) * 1000:.0f} | {statistics.median(search) * 1000:.1f} |", flush=True)


if __name__ == "__main__":
    main()
