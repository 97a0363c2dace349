"""The post's experiment as a benchmark: every experiment x mode x metric, with Wilson intervals.

Each unique prompt goes through the model once; all modes are then scored from the cached states
(the correction is added after the final norm), so the model's forward time dominates.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import time
from dataclasses import asdict, dataclass
from importlib import resources

import torch

from . import metrics
from .calibrate import POST, Calibration, ModeSettings, default_point, empty_bank
from .engine import answer, prompt_states, write_entries
from .lm import FrozenLM, PromptStates
from .memory import MemoryBank
from .metrics import PARAPHRASE, LabelIndex, ProbeSet, hit_mask, probe_set
from .readout import read_answers
from .probes import answer_matches, fact_pool, lookalikes
from .keying import key_question, question_forms
from .prompts import SlottedPrompt, render
from .in_context import IN_CONTEXT_MODES, in_context_readout
from .retrieval import MODES, KeyGeometry
from .series import digit_lookalikes, siblings, swapped
from .stats import wilson
from .typed import typed_probes
from .suite import Binding, ExperimentSpec, Suite, WordSpec, bindings

BENCH_MODES = MODES + IN_CONTEXT_MODES  # the memory's modes and the in-context baselines

METRICS = ("write", "read", "plain", "unrelated", "unchanged", "wrong_context", "lookalike", "kept", "sibling",
           "swapped")
LOWER_IS_BETTER = metrics.LOWER_IS_BETTER
MIN_KEPT_FACTS = 40


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


@dataclass
class Timing:
    forward_s: float = 0.0
    other_s: float = 0.0
    forward_passes: int = 0

    @property
    def total_s(self) -> float:
        return self.forward_s + self.other_s


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


def experiment_probes(lm: FrozenLM, suite: Suite, experiment: ExperimentSpec, words: list[WordSpec],
                      seed: int, typed: bool = False) -> tuple[list[Binding], list[ProbeSet]]:
    """The bindings written for one experiment and every probe set asked of that memory: the written
    forms, paraphrases, the context-free question, wrong contexts (other experiments' contexts and
    contexts no experiment uses), look-alike words (never written) in a written context, siblings (an
    unwritten member of the written context's series) and the written contexts' words swapped; with `typed`,
    all of these again as people type them (`fastmem.typed`)."""
    binds = bindings(experiment, words)
    targets = [b.label for b in binds]
    sets = [probe_set("write", [b.write for b in binds], targets), probe_set("read", [b.read for b in binds], targets)]
    sets += [probe_set(PARAPHRASE + p.name, [render(p.read, b.word, b.context) for b in binds], targets)
             for p in suite.paraphrases]
    sets.append(probe_set("plain", [render(suite.plain, w.word) for w in words], [w.word for w in words]))
    wrong = [c for e in suite.experiments if e.name != experiment.name for c in e.contexts
             if c not in experiment.contexts] + [c for c in suite.unseen_contexts if c not in experiment.contexts]
    sets.append(probe_set("wrong_context", [render(experiment.read, w.word, c) for w in words for c in wrong],
                          [w.word for w in words for _ in wrong]))
    per_word = word_lookalikes(lm.tokenizer, [w.word for w in words], seed, [w.word for w in suite.words])
    looks = [lk for group in per_word for lk in group]
    sets.append(probe_set("lookalike", [render(experiment.read, lk, experiment.contexts[i % 2])
                                        for i, lk in enumerate(looks)]))
    written = [c for e in suite.experiments for c in e.contexts]
    sibs = siblings(list(experiment.contexts), 3, seed, avoid=written)
    sets.append(probe_set("sibling", [render(experiment.read, w.word, s.context) for w in words for s in sibs],
                          [w.word for w in words for _ in sibs]))
    turned = [t for t in (swapped(c) for c in experiment.contexts) if t and t not in written]
    if turned:
        sets.append(probe_set("swapped", [render(experiment.read, w.word, t) for w in words for t in turned],
                              [w.word for w in words for _ in turned]))
    if typed:
        one_look = [(group[i % len(group)], experiment.contexts[i % 2]) for i, group in enumerate(per_word) if group]
        sets += typed_probes(lm.tokenizer, binds, [w.word for w in words], wrong, one_look, written, seed,
                             question_forms(suite))
    return binds, sets


def word_lookalikes(tokenizer, words: list[str], seed: int, avoid: list[str]) -> list[list[str]]:
    """Look-alikes of each word: three of a word of letters (`probes.lookalikes`), and of a word with digits its
    digits exchanged or changed (`series.digit_lookalikes`)."""
    letters = [w for w in words if w.isalpha()]
    made = iter(lookalikes(tokenizer, letters, seed, avoid=avoid))
    out: list[list[str]] = []
    for w in words:
        if w.isalpha():
            out.append([next(made).word for _ in range(3)])
        else:
            taken = list(words) + list(avoid) + [lk for group in out for lk in group]
            out.append([lk for lk, _ in digit_lookalikes(w, seed, avoid=taken)])
    return out


def fact_probes() -> ProbeSet:
    """Every fact prompt of the pool; `kept` scores only those the plain model gets right."""
    facts = fact_pool()
    return probe_set("kept", [key_question(f.prompt, []).prompt for f in facts], [f.answer for f in facts],
                     [None] * len(facts))


def qualified_facts(lm: FrozenLM, facts: ProbeSet, base_ids: torch.Tensor) -> tuple[ProbeSet, torch.Tensor]:
    """The fact prompts the plain model answers right (`probes.answer_matches` on its first greedy token), and
    their positions in `facts`: the only ones `kept` scores."""
    keep = [i for i, t in enumerate(facts.targets) if answer_matches(lm.tokenizer, int(base_ids[i]), t)]
    return (probe_set("kept", [facts.prompts[i] for i in keep], [facts.targets[i] for i in keep], [None] * len(keep)),
            torch.tensor(keep, dtype=torch.long))


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


def score_probes(lm: FrozenLM, bank: MemoryBank, geometry: KeyGeometry, cal: Calibration, experiment: str,
                 mode: str, probes: ProbeSet, states: PromptStates, base_logits: torch.Tensor | None = None,
                 labels: LabelIndex | None = None, post: dict | None = None, point: str | None = None) -> list[Row]:
    """Rows for one probe set under one mode, from one retrieval and injection; an unrelated set also gives
    `unchanged` (the same answers under another rule). The one scoring path of bench, scale and curve."""
    in_context = mode in IN_CONTEXT_MODES
    point = point or default_point(mode)
    s = ModeSettings(0.0, None) if in_context else cal.settings(mode, point)
    labels = labels or LabelIndex.of(bank)
    sets = [probes] + ([probe_set("unchanged", probes.prompts, probes.targets, probes.contexts, probes.form)]
                       if probes.metric == "unrelated" else [])
    answers, tokens = None, None
    if len(probes) and in_context:  # no retrieval: the statements go before the question
        base = lm.logits(states.final) if base_logits is None else base_logits
        answers, lengths = in_context_readout(lm, bank, mode, list(probes.prompts), base.argmax(-1),
                                              labels.in_play(probes, lm.label_tokens))
        tokens = sum(lengths) / len(lengths)
    elif len(probes):
        got = answer(lm, bank, geometry, states, list(probes.contexts), mode, s.alpha, s.threshold, base_logits)
        answers = read_answers(lm, bank, probes, got, s.alpha)
        tokens = mean_question_tokens(lm, probes.prompts)
    rows = []
    for p in sets:
        n = len(p)
        h = int(hit_mask(p, answers.ids, answers.base_ids, labels, lm).sum()) if n else 0
        lo, hi = wilson(h, n)
        post_figure = (post or {}).get((experiment, mode, p.metric)) if not p.form and point == POST else None
        rows.append(Row(lm.name, experiment, mode, p.metric, n, h, h / max(1, n), lo, hi, cal.seed, cal.key_layer,
                        cal.symbol_layer, cal.context_layer, cal.value_steps, s.alpha, s.threshold,
                        post_figure, cal.token_layer, tokens, p.form, point))
    return rows


@functools.lru_cache(maxsize=64)
def mean_question_tokens(lm: FrozenLM, prompts: tuple[SlottedPrompt, ...]) -> float:
    """Mean tokens per question as the memory modes run it; every mode scores the same probe set, so it is
    counted once per set, not once per mode."""
    return sum(len(lm.encode(p).ids) for p in prompts) / len(prompts)


def run_bench(lm: FrozenLM, suite: Suite, cal: Calibration, geometry: KeyGeometry, experiments=None,
              modes=MODES, words_per_experiment: int | None = None, progress=None, should_stop=None,
              on_row=None, typed: bool = False, point: str | None = None) -> tuple[list[Row], Timing]:
    """Score test words. `progress(done, total)`; `should_stop()` (polled after every forward batch)
    ends early, keeping finished rows; `typed` adds the typed probe sets (`fastmem.typed`); `point`: every
    mode at this operating point (default: each mode at its own, `calibrate.default_point`)."""
    timing, rows, post = Timing(), [], post_figures()
    chosen = [suite.experiment(name) for name in experiments] if experiments else suite.experiments
    words = suite.split("test")[:words_per_experiment] if words_per_experiment else suite.split("test")
    plan = [experiment_probes(lm, suite, exp, words, cal.seed, typed) for exp in chosen]
    forms = question_forms(suite)  # keyed as the app keys a typed question
    shared = [probe_set("unrelated", [key_question(q, forms).prompt for q in suite.unrelated]), fact_probes()]
    total = len(unique_prompts([p for s in shared for p in s.prompts]
                               + [p for binds, sets in plan for p in [b.write for b in binds]
                                  + [q for s in sets for q in s.prompts]]))
    done = [0]

    def tick(n):
        done[0] += n
        if progress:
            progress(done[0], total)
        if should_stop and should_stop():
            raise Stopped

    store = StateStore(lm, empty_bank(lm, cal), tick)
    start = time.perf_counter()
    try:
        unrelated, facts = shared
        fact_states = store(facts.prompts)
        kept, keep = qualified_facts(lm, facts, lm.logits(fact_states.final).argmax(-1))
        shared_sets = [(unrelated, store(unrelated.prompts)), (kept, fact_states.select(keep))]
        for exp, (binds, sets) in zip(chosen, plan):
            write_states = store([b.write for b in binds])
            scored = [(exp.name, s, store(s.prompts)) for s in sets] + [(exp.name, *x) for x in shared_sets]
            scored += [(f"{exp.name} · {n}-token labels", sub, store(sub.prompts))
                       for n, sub in by_label_length(lm, binds, sets)]
            bank = empty_bank(lm, cal)  # written as Lab.write writes, from the states already run
            write_entries(lm, bank, [b.write for b in binds], [b.word for b in binds], [b.context for b in binds],
                          [b.label for b in binds], states=write_states)
            labels = LabelIndex.of(bank)
            base = [lm.logits(st.final) for _, _, st in scored]  # the plain model's, shared by every mode
            for mode in modes:
                for (name, s, st), b in zip(scored, base):
                    for row in score_probes(lm, bank, geometry, cal, name, mode, s, st, b, labels, post, point):
                        rows.append(row)
                        if on_row:
                            on_row(row)
    except Stopped:
        pass
    timing.forward_s, timing.forward_passes = store.forward_s, store.forward_passes
    timing.other_s = time.perf_counter() - start - store.forward_s
    return rows, timing


LENGTH_METRICS = ("write", "read", "plain")


def by_label_length(lm: FrozenLM, binds: list[Binding], sets: list[ProbeSet]) -> list[tuple[int, ProbeSet]]:
    """Write, Read and Plain again for each label length in tokens, when the labels' lengths differ (a
    word's Plain goes by its longest label)."""
    length = {b.label: len(lm.label_tokens(b.label)) for b in binds}
    by_word: dict[str, int] = {}
    for b in binds:
        by_word[b.word] = max(by_word.get(b.word, 0), length[b.label])
    if len(set(length.values())) < 2:
        return []
    out = []
    for n in sorted(set(length.values())):
        for s in sets:
            if s.metric in LENGTH_METRICS and not s.form:
                size = length if s.metric != "plain" else by_word
                keep = [i for i, t in enumerate(s.targets) if size[t] == n]
                if keep:
                    out.append((n, probe_set(s.metric, [s.prompts[i] for i in keep], [s.targets[i] for i in keep],
                                             [s.contexts[i] for i in keep])))
    return out


def unique_prompts(prompts) -> list[SlottedPrompt]:
    return list(dict.fromkeys(prompts))


def rows_to_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(Row.__dataclass_fields__))
    writer.writeheader()
    for r in rows:
        writer.writerow(asdict(r))
    return buf.getvalue()


def rows_to_json(rows: list[Row], timing: Timing | None = None, cal: Calibration | None = None) -> str:
    out = {"rows": [asdict(r) for r in rows]}
    if timing:
        out["timing"] = {**asdict(timing), "total_s": timing.total_s}
    if cal:
        out["calibration"] = json.loads(cal.to_json())
    return json.dumps(out, indent=1)
