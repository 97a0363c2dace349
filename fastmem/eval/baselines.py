"""The memory against its baselines as the number of bindings grows: the same metrics, and cost per question.

`python -m fastmem baselines --sizes 2 10 100 1000`. At each size N, memories of N bindings (N/2 invented words,
each written in the first experiment's two contexts; a small N takes several memories, so that every size asks
about `questions` bindings). Each memory is asked its written bindings (read), each asked word in a context
never written (wrong_context), an unwritten look-alike of it in a written context (lookalike), its context-free
question (plain) and, for the first memory, the fact prompts the plain model gets right (kept); every mode is
scored by `bench.score_probes`. Cost: tokens per question as the model runs it, and the milliseconds of one
question asked alone (batch 1, median of `timed` questions) through the first answer token: for a memory mode
its forward pass, retrieval and injection; for an in-context mode the whole prompt, and for in_context_all also
the question alone on the statements' reused KV cache. A mode whose prompt would not fit the model's window is
reported as not fitting at that size.
"""
from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass, replace

import torch

from fastmem.eval.probesets import kept_facts, sample_probes
from fastmem.eval.scoring import Row, check_sizes, score_probes, size_label
from fastmem.model.decode import answer_states
from fastmem.memory.engine import answer, prompt_states
from fastmem.errors import SettingsError
from fastmem.memory.in_context import (build_prompts, context_window, in_context_mode, is_in_context,
                                       on_cached_statements, run_statements)
from fastmem.eval.metrics import LabelIndex, ProbeSet, lower_is_better
from fastmem.memory.modes import DEFAULT_MODE
from fastmem.eval.stats import wilson
from fastmem.eval.suite import LABELS, nonce_words

SIZES = (2, 10, 100, 1000)
DEFAULT_MODES = (DEFAULT_MODE, "codebook", "in_context_all", "in_context_word")
METRICS = ("read", "wrong_context", "lookalike", "plain", "kept")


@dataclass(frozen=True)
class Cost:
    size: int
    mode: str
    fits: bool  # False: the prompt is longer than the model's window (nothing else measured)
    prompt_tokens: float | None  # median tokens per question as the model runs it
    ms_per_question: float | None  # one question alone, batch 1, median
    ms_cached: float | None = None  # in_context_all: the question alone on the statements' cached KV
    window: int | None = None


def run_baselines(lab, sizes=SIZES, modes=DEFAULT_MODES, seed: int = 0, questions: int = 64, timed: int = 5,
                  progress=None, should_stop=None) -> tuple[list[Row], list[Cost]]:
    """Rows (experiment = `N bindings`) for every size, mode and metric, and a Cost per size and mode.
    `progress(memories done, memories in all, message)`; `should_stop()` is polled between memories and keeps
    what is finished."""
    sizes, rng = check_sizes(sizes, 100_000), random.Random(seed)
    experiment = lab.suite.experiments[0]
    plan = {n: max(1, math.ceil(questions / n)) for n in sizes}
    taken = {w.word for w in lab.suite.words}
    pool = [w for w in nonce_words(max(n // 2 * r for n, r in plan.items()) + len(taken) + 64, seed + 2000)
            if w not in taken]
    facts = None
    tally: dict[tuple[int, str, str], list[Row]] = {}
    costs: list[Cost] = []
    done, total = 0, sum(plan.values())
    for size in sizes:
        too_long: set[str] = set()
        for rep in range(plan[size]):
            if should_stop and should_stop():
                return _rows(tally), costs
            words = pool[rep * (size // 2):(rep + 1) * (size // 2)]
            labels = {w: rng.sample(LABELS, 2) for w in words}
            bank = lab.new_memory()
            for at in range(0, len(words), 256):  # bounded batches: Lab.write holds their states at once
                lab.write(bank, [(w, c, labels[w][i]) for w in words[at:at + 256]
                                 for i, c in enumerate(experiment.contexts)])
            if facts is None:
                facts = kept_facts(lab.lm)
            asked = _asked(words, experiment.contexts, max(1, questions // plan[size]), seed + rep)
            sets = sample_probes(lab.lm, lab.suite, experiment, asked, labels, words, seed + rep)
            sets += [facts] if rep == 0 else []
            states = {s.metric: prompt_states(lab.lm, bank, list(s.prompts)) for s in sets}
            index = LabelIndex.of(bank)
            for mode in modes:
                if mode in too_long:
                    continue
                try:
                    for s in sets:
                        for row in score_probes(lab.lm, bank, lab.geometry, lab.calibration, size_label(size), mode,
                                                s, states[s.metric], labels=index, size=size):
                            tally.setdefault((size, mode, row.metric), []).append(row)
                except SettingsError:
                    if not is_in_context(mode):
                        raise
                    too_long.add(mode)  # the prompt does not fit the window: reported in its Cost
            if rep == 0:
                costs += [_cost(lab, bank, mode, size, sets[0], timed) for mode in modes]
            done += 1
            if progress:
                progress(done, total, f"{size:,} bindings: memory {rep + 1}/{plan[size]} scored")
    return _rows(tally), costs


def _rows(tally: dict[tuple, list[Row]]) -> list[Row]:
    """One row per (size, mode, metric): the memories' hits and questions added up."""
    out = []
    for rows in tally.values():
        hits, n = sum(r.hits for r in rows), sum(r.n for r in rows)
        lo, hi = wilson(hits, n)
        tokens = [r.prompt_tokens for r in rows if r.prompt_tokens is not None]
        out.append(replace(rows[0], hits=hits, n=n, rate=hits / max(1, n), ci_low=lo, ci_high=hi,
                           prompt_tokens=sum(tokens) / len(tokens) if tokens else None))
    return out


def _asked(words: list[str], contexts: list[str], count: int, seed: int) -> list[tuple[str, int]]:
    """A sample of `count` written bindings (word, context index)."""
    written = [(w, i) for w in words for i in range(len(contexts))]
    return random.Random(seed).sample(written, min(count, len(written)))


def _median_ms(run, items) -> float:
    times = []
    for item in items:
        start = time.perf_counter()
        run(item)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


@torch.inference_mode()
def _cost(lab, bank, mode: str, size: int, reads: ProbeSet, timed: int) -> Cost:
    lm, window = lab.lm, context_window(lab.lm)
    prompts = list(reads.prompts[:timed])
    if not is_in_context(mode):
        s = lab.calibration.settings(mode)

        def one(p):
            answer(lm, bank, lab.geometry, prompt_states(lm, bank, [p]), [p.context], mode, s.alpha, s.threshold)

        one(prompts[0])  # warm: entry caches (the codebook's keys) are built once per memory
        tokens = statistics.median(len(lm.encode(p).ids) for p in prompts)
        return Cost(size, mode, True, tokens, _median_ms(one, prompts), None, window)
    try:
        built = build_prompts(lm, bank, mode, prompts)
    except SettingsError:
        return Cost(size, mode, False, None, None, None, window)
    whole = _median_ms(lambda b: answer_states(lm, [b.ids], [1]), built)
    cached = None
    if in_context_mode(mode).caches_statements:
        cache = run_statements(lm, built[0].prefix)
        cached = _median_ms(lambda b: on_cached_statements(lm, cache, len(b.prefix), [b.question]), built)
    return Cost(size, mode, True, statistics.median(len(b) for b in built), whole, cached, window)


def format_baselines(rows: list[Row], costs: list[Cost]) -> str:
    head = ["bindings", "mode"] + [m + (" ↓" if lower_is_better(m) else "") for m in METRICS] + ["tokens/question", "ms/question", "ms, statements cached"]
    lines = []
    for c in costs:
        cells = [f"{c.size:,}", c.mode]
        for m in METRICS:
            r = next((r for r in rows if r.size == c.size and r.mode == c.mode and r.metric == m), None)
            cells.append(f"{r.rate:.3f} [{r.ci_low:.2f},{r.ci_high:.2f}] n={r.n}" if r else "does not fit")
        cells += [f"{c.prompt_tokens:,.0f}" if c.prompt_tokens is not None else f"> {c.window:,}",
                  f"{c.ms_per_question:.0f}" if c.ms_per_question is not None else "–",
                  f"{c.ms_cached:.0f}" if c.ms_cached is not None else "–"]
        lines.append(cells)
    widths = [max(len(r[i]) for r in [head] + lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head] + lines)
