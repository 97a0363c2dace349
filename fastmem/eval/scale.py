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

from fastmem.eval.probesets import kept_facts, sample_probes
from fastmem.eval.scoring import Row, check_sizes, score_probes, size_label
from fastmem.memory.engine import lookup, prompt_states
from fastmem.eval.metrics import LabelIndex, ProbeSet
from fastmem.memory.modes import DEFAULT_MODE
from fastmem.eval.suite import LABELS, nonce_words

MAX_SIZE = 200_000


@dataclass(frozen=True)
class ScaleTiming:
    size: int
    write_s_per_binding: float  # Lab.write, forward pass included, for the bindings added at this size
    retrieval_ms: float  # median over single questions (keys already computed), entry cache warm
    cache_build_s: float  # first retrieval after the memory changed: derived entry tensors rebuilt


def run_scale(lab, sizes, seed: int = 0, sample: int = 128, mode: str = DEFAULT_MODE,
              progress=None, should_stop=None) -> tuple[list[Row], list[ScaleTiming]]:
    """`progress(sizes done, sizes in all, message)`; `should_stop()` is polled between write batches and ends
    the run with the sizes finished so far."""
    sizes = check_sizes(sizes, MAX_SIZE)
    rng = random.Random(seed)
    taken = {w.word for w in lab.suite.words}
    words = [w for w in nonce_words(sizes[-1] // 2 + len(taken) + 16, seed + 1000) if w not in taken]
    words = words[:sizes[-1] // 2]
    experiment = lab.suite.experiments[0]
    labels = {w: rng.sample(LABELS, 2) for w in words}
    bank, points, timings, written = lab.new_memory(), [], [], 0
    settings = lab.calibration.settings(mode)
    facts = kept_facts(lab.lm)
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
        sets = sample_probes(lab.lm, lab.suite, experiment, [(w, i % 2) for i, w in enumerate(asked)], labels,
                             words[:n_words], seed, plain=False) + [facts]
        states = {s.metric: prompt_states(lab.lm, bank, list(s.prompts)) for s in sets}
        index = LabelIndex.of(bank)
        for s in sets:
            points += score_probes(lab.lm, bank, lab.geometry, lab.calibration, size_label(size), mode, s,
                                   states[s.metric], labels=index, size=size)
        timings.append(_time_retrieval(lab, bank, states["read"], sets[0], mode, settings.threshold, size, write_s))
        if progress:
            progress(done + 1, len(sizes), f"size {size:,}: scored")
    return points, timings


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
            p = next(p for p in points if p.size == t.size and p.metric == m)
            cells.append(f"{p.rate:.3f} [{p.ci_low:.2f},{p.ci_high:.2f}] n={p.n}")
        cells += [f"{t.write_s_per_binding:.4f}", f"{t.retrieval_ms:.2f}"]
        lines.append(cells)
    widths = [max(len(r[i]) for r in [head] + lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head] + lines)
