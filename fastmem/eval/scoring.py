"""The evaluation core: how a probe set is scored under a mode, the same way for the benchmark, the capacity and
baseline runs and the curve. A probe set's questions are run once (`StateStore`), retrieved and injected by the
app's path (`memory.engine.answer`), answered by the app's rule (`memory.readout.answers`) and judged by the
metric's rule (`metrics.hit_mask`); every row is a `Row` with typed fields.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import io
import time
from dataclasses import dataclass
from importlib import resources

import torch

from fastmem.errors import SettingsError
from fastmem.eval.calibrate import POST, Calibration, ModeSettings, default_point
from fastmem.eval.metrics import LabelIndex, ProbeSet, hit_mask, probe_set
from fastmem.eval.stats import wilson
from fastmem.memory.bank import MemoryBank
from fastmem.memory.engine import answer, prompt_states
from fastmem.memory.in_context import in_context_readout, is_in_context
from fastmem.memory.modes import get_mode
from fastmem.memory.prompts import SlottedPrompt
from fastmem.eval.metrics import read_answers
from fastmem.memory.retrieval import KeyGeometry
from fastmem.model.decode import next_tokens
from fastmem.model.lm import FrozenLM, PromptStates


@dataclass(frozen=True)
class Row:
    model: str
    experiment: str
    mode: str
    metric: str
    n: int
    hits: int
    rate: float
    ci_low: float
    ci_high: float
    seed: int
    key_layer: int
    symbol_layer: int
    context_layer: int
    value_steps: int
    alpha: float
    threshold: float | None
    post: float | None  # the reference post's figure (Pythia-70M), where it reports one
    token_layer: int = -1
    prompt_tokens: float | None = None  # mean tokens per prompt as the model ran it (in-context: with statements)
    form: str = ""  # how the questions were phrased: "" the suite's own forms, "typed:<name>" (fastmem.typed)
    operating_point: str = ""  # whose objective chose alpha and threshold: "post" or "selective" (calibrate)
    size: int | None = None  # bindings in the memory (capacity and baseline runs); None: a suite's experiment


@dataclass
class Timing:
    """Where a run's time went: the model's forward passes (its output head's plain logits and the codebook's
    keys included), retrieval (scores, choice, injection), decoding
    answers past their first token, and judging them; `other_s` is the rest (building probe sets, writing)."""

    forward_s: float = 0.0
    retrieval_s: float = 0.0
    decode_s: float = 0.0
    scoring_s: float = 0.0
    other_s: float = 0.0
    forward_passes: int = 0

    @property
    def total_s(self) -> float:
        return self.forward_s + self.retrieval_s + self.decode_s + self.scoring_s + self.other_s

    @contextlib.contextmanager
    def measure(self, part: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, part, getattr(self, part) + time.perf_counter() - start)

    def describe(self) -> str:
        parts = {"model forward": self.forward_s, "retrieval": self.retrieval_s, "decoding": self.decode_s,
                 "scoring": self.scoring_s, "everything else": self.other_s}
        outside = self.total_s - self.forward_s
        return (" + ".join(f"{name} {s:.1f} s" for name, s in parts.items())
                + f" (outside the model's forward passes: {outside / max(self.total_s, 1e-9):.1%})")


class Stopped(Exception):
    """`should_stop()` said so between two forward batches."""


def post_figures() -> dict[tuple[str, str, str], float]:
    text = resources.files("fastmem.data").joinpath("post_results.csv").read_text()
    out = {}
    for row in csv.DictReader(io.StringIO(text)):
        for metric in ("write", "read", "plain", "unrelated"):
            if row[metric]:
                out[(row["experiment"], row["mode"], metric)] = float(row[metric])
    return out


class StateStore:
    """States of every prompt run so far, one forward pass per unique prompt. Each forward call's states stay
    one part; a probe set's states are its rows selected from the parts (never the whole store copied)."""

    def __init__(self, lm: FrozenLM, bank: MemoryBank, progress=None):
        self.lm, self.bank, self.progress = lm, bank, progress
        self.parts: list[PromptStates] = []
        self.where: dict[SlottedPrompt, tuple[int, int]] = {}  # prompt -> (part, row)
        self.forward_s, self.forward_passes = 0.0, 0

    def __call__(self, prompts) -> PromptStates:
        prompts = list(prompts)
        new = [p for p in unique_prompts(prompts) if p not in self.where]
        if new:
            start = time.perf_counter()
            got = prompt_states(self.lm, self.bank, new, progress=self.progress)
            got = got.keep((self.bank.key_layer, self.bank.symbol_layer, self.bank.context_layer))
            self.forward_s += time.perf_counter() - start
            self.forward_passes += len(new)
            self.where.update({p: (len(self.parts), i) for i, p in enumerate(new)})
            self.parts.append(got)
        if not prompts:
            return prompt_states(self.lm, self.bank, []).keep((self.bank.key_layer, self.bank.symbol_layer,
                                                                self.bank.context_layer))
        at = [self.where[p] for p in prompts]
        used = sorted({part for part, _ in at})
        if len(used) == 1:
            return self.parts[used[0]].select(torch.tensor([row for _, row in at], dtype=torch.long))
        chunks, offset, index = [], {}, []
        for part in used:
            rows = sorted({row for q, row in at if q == part})
            offset.update({(part, row): len(index) + i for i, row in enumerate(rows)})
            index += rows
            chunks.append(self.parts[part].select(torch.tensor(rows, dtype=torch.long)))
        joined = PromptStates.cat(chunks)
        return joined.select(torch.tensor([offset[a] for a in at], dtype=torch.long))


def unique_prompts(prompts) -> list[SlottedPrompt]:
    return list(dict.fromkeys(prompts))


def check_sizes(sizes, most: int) -> list[int]:
    """Memory sizes for a capacity or baseline run: from 2 to `most` bindings."""
    sizes = sorted({int(s) for s in sizes})
    if not sizes or sizes[0] < 2 or sizes[-1] > most:
        raise SettingsError(f"Sizes must be from 2 to {most:,} bindings.")
    return sizes


def size_label(size: int) -> str:
    """How a size run's rows name their memory (`experiment`): that many bindings."""
    return f"{size:,} bindings"


def score_probes(lm: FrozenLM, bank: MemoryBank, geometry: KeyGeometry, cal: Calibration, experiment: str,
                 mode: str, probes: ProbeSet, states: PromptStates, base_logits: torch.Tensor | None = None,
                 labels: LabelIndex | None = None, post: dict | None = None, point: str | None = None,
                 timing: Timing | None = None, size: int | None = None,
                 base_ids: torch.Tensor | None = None) -> list[Row]:
    """Rows for one probe set under one mode, from one retrieval and injection; an unrelated set also gives
    `unchanged` (the same answers under another rule). The one scoring path of bench, scale and curve."""
    mode = get_mode(mode).name
    in_context = is_in_context(mode)
    point = point or default_point(mode)
    s = ModeSettings(0.0, None) if in_context else cal.settings(mode, point)
    labels = labels or LabelIndex.of(bank)
    sets = [probes] + ([probe_set("unchanged", probes.prompts, probes.targets, probes.contexts, probes.form)]
                       if probes.metric == "unrelated" else [])
    answers, tokens = None, None
    clock = timing or Timing()
    if len(probes) and in_context:  # no retrieval: the statements go before the question
        base = lm.logits(states.final) if base_logits is None else base_logits
        with clock.measure("forward_s"):
            answers, lengths = in_context_readout(lm, bank, mode, list(probes.prompts), next_tokens(base),
                                                  labels.in_play(probes, lm.label_tokens))
        tokens = sum(lengths) / len(lengths)
    elif len(probes):
        with clock.measure("retrieval_s"):
            got = answer(lm, bank, geometry, states, list(probes.contexts), mode, s.alpha, s.threshold, base_logits,
                         base_ids)
        with clock.measure("decode_s"):
            answers = read_answers(lm, bank, probes, got, s.alpha)
        tokens = mean_question_tokens(lm, probes.prompts)
    rows = []
    for p in sets:
        n = len(p)
        with clock.measure("scoring_s"):
            h = int(hit_mask(p, answers.ids, answers.base_ids, labels, lm).sum()) if n else 0
        lo, hi = wilson(h, n)
        post_figure = (post or {}).get((experiment, mode, p.metric)) if not p.form and point == POST else None
        rows.append(Row(lm.name, experiment, mode, p.metric, n, h, h / max(1, n), lo, hi, cal.seed, cal.key_layer,
                        cal.symbol_layer, cal.context_layer, cal.value_steps, s.alpha, s.threshold,
                        post_figure, cal.token_layer, tokens, p.form, point, size))
    return rows


@functools.lru_cache(maxsize=64)
def mean_question_tokens(lm: FrozenLM, prompts: tuple[SlottedPrompt, ...]) -> float:
    """Mean tokens per question as the memory modes run it; every mode scores the same probe set, so it is
    counted once per set, not once per mode."""
    return sum(len(lm.encode(p).ids) for p in prompts) / len(prompts)


