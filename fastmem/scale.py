"""Capacity: one memory grown to N bindings (N/2 invented words x the first experiment's two contexts),
scored at each size on a sample of its own words with the benchmark's metrics and timed.

`python -m fastmem scale --sizes 100 1000 10000`.
"""
from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass

import torch

from .bench import Row, fact_probes, qualified_facts, score_probes
from .engine import lookup, prompt_states
from .errors import SettingsError
from .lab import Lab
from .metrics import LabelIndex, ProbeSet, probe_set
from .probes import lookalikes
from .prompts import render
from .retrieval import DEFAULT_MODE
from .suite import LABELS, nonce_words

MAX_SIZE = 200_000


@dataclass(frozen=True)
class ScaleTiming:
    size: int
    write_s_per_binding: float  # Lab.write, forward pass included, for the bindings added at this size
    retrieval_ms: float  # median over single questions (keys already computed), entry cache warm
    cache_build_s: float  # first retrieval after the memory changed: derived entry tensors rebuilt


def check_sizes(sizes) -> list[int]:
    sizes = sorted({int(s) for s in sizes})
    if not sizes or sizes[0] < 2 or sizes[-1] > MAX_SIZE:
        raise SettingsError(f"Sizes must be from 2 to {MAX_SIZE:,} bindings.")
    return sizes


def size_label(size: int) -> str:
    """The `experiment` of a scale row: one memory of that many bindings."""
    return f"{size:,} bindings"


def size_of(label: str) -> int:
    """The number of bindings back from `size_label`."""
    return int(label.split()[0].replace(",", ""))


def run_scale(lab: Lab, sizes, seed: int = 0, sample: int = 128, mode: str = DEFAULT_MODE,
              progress=None, should_stop=None) -> tuple[list[Row], list[ScaleTiming]]:
    """`progress(sizes done, sizes in all, message)`; `should_stop()` is polled between write batches and ends
    the run with the sizes finished so far."""
    sizes = check_sizes(sizes)
    rng = random.Random(seed)
    taken = {w.word for w in lab.suite.words}
    words = [w for w in nonce_words(sizes[-1] // 2 + len(taken) + 16, seed + 1000) if w not in taken]
    words = words[:sizes[-1] // 2]
    experiment = lab.suite.experiments[0]
    labels = {w: rng.sample(LABELS, 2) for w in words}
    bank, points, timings, written = lab.new_memory(), [], [], 0
    settings = lab.calibration.settings(mode)
    facts = _qualified_facts(lab)
    for done, size in enumerate(sizes):
        n_words = size // 2
        rows = [(w, c, labels[w][i]) for w in words[written:n_words] for i, c in enumerate(experiment.contexts)]
        start = time.perf_counter()
        for at in range(0, len(rows), 512):  # bounded batches: Lab.write holds their states at once
            if should_stop and should_stop():
                return points, timings
            lab.write(bank, rows[at:at + 512])
            if progress:
                progress(done, len(sizes), f"size {size:,}: wrote {min(at + 512, len(rows)):,}/{len(rows):,}")
        write_s = (time.perf_counter() - start) / max(1, len(rows))
        written = n_words
        asked = rng.sample(words[:n_words], min(sample, n_words))
        sets = _probe_sets(lab, experiment, asked, labels, words[:n_words], seed) + [facts]
        states = {s.metric: prompt_states(lab.lm, bank, list(s.prompts)) for s in sets}
        index = LabelIndex.of(bank)
        for s in sets:
            points += score_probes(lab.lm, bank, lab.geometry, lab.calibration, size_label(size), mode, s,
                                   states[s.metric], labels=index)
        timings.append(_time_retrieval(lab, bank, states["read"], sets[0], mode, settings.threshold, size, write_s))
        if progress:
            progress(done + 1, len(sizes), f"size {size:,}: scored")
    return points, timings


def _probe_sets(lab: Lab, experiment, asked: list[str], labels: dict, written: list[str], seed: int) -> list[ProbeSet]:
    """Read in a written context, a never-written context, and a look-alike (one kind per word, cycling)."""
    ctx = [experiment.contexts[i % 2] for i in range(len(asked))]
    unseen = lab.suite.unseen_contexts
    looks = lookalikes(lab.lm.tokenizer, asked, seed, avoid=written + [w.word for w in lab.suite.words])
    one_kind = [looks[3 * i + i % 3] for i in range(len(asked))]
    return [
        probe_set("read", [render(experiment.read, w, c) for w, c in zip(asked, ctx)],
                  [labels[w][i % 2] for i, w in enumerate(asked)]),
        probe_set("wrong_context", [render(experiment.read, w, unseen[i % len(unseen)]) for i, w in enumerate(asked)],
                  asked),
        probe_set("lookalike", [render(experiment.read, lk.word, c) for lk, c in zip(one_kind, ctx)]),
    ]


def _qualified_facts(lab: Lab) -> ProbeSet:
    facts = fact_probes()
    return qualified_facts(lab.lm, facts, lab.lm.logits(lab.lm.states(list(facts.prompts)).final).argmax(-1))[0]


def _time_retrieval(lab, bank, states, reads: ProbeSet, mode, threshold, size, write_s) -> ScaleTiming:
    start = time.perf_counter()
    lookup(lab.lm, mode, states.select(slice(0, 1)), bank, lab.geometry, reads.contexts[:1], threshold)
    build = time.perf_counter() - start
    times = []
    for i in range(min(64, len(reads))):
        one = states.select(slice(i, i + 1))
        start = time.perf_counter()
        with torch.inference_mode():
            lookup(lab.lm, mode, one, bank, lab.geometry, reads.contexts[i:i + 1], threshold)
        times.append(time.perf_counter() - start)
    return ScaleTiming(size, write_s, 1000 * statistics.median(times), build)


def format_scale(points: list[Row], timings: list[ScaleTiming]) -> str:
    metrics = list(dict.fromkeys(p.metric for p in points))
    head = ["bindings"] + metrics + ["write s/binding", "retrieval ms/question (p50)"]
    lines = []
    for t in timings:
        cells = [f"{t.size:,}"]
        for m in metrics:
            p = next(p for p in points if p.experiment == size_label(t.size) and p.metric == m)
            cells.append(f"{p.rate:.3f} [{p.ci_low:.2f},{p.ci_high:.2f}] n={p.n}")
        cells += [f"{t.write_s_per_binding:.4f}", f"{t.retrieval_ms:.2f}"]
        lines.append(cells)
    widths = [max(len(r[i]) for r in [head] + lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head] + lines)
