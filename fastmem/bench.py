"""The post's experiment as a benchmark: every experiment x mode x metric, with Wilson intervals.

Each unique prompt goes through the model once; all modes are then scored from the cached states
(the correction is added after the final norm), so the model's forward time dominates.
"""
from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass
from importlib import resources

import torch

from . import metrics
from .calibrate import Calibration, empty_bank
from .engine import answer, make_entries, prompt_states
from .lm import FrozenLM, PromptStates
from .metrics import PARAPHRASE, LabelIndex, ProbeSet, hit_mask, probe_set
from .probes import answer_matches, fact_pool, lookalikes
from .prompts import SlottedPrompt, render, unrelated_prompt
from .retrieval import MODES, KeyGeometry
from .stats import wilson
from .suite import Binding, ExperimentSpec, Suite, WordSpec, bindings

METRICS = ("write", "read", "plain", "unrelated", "unchanged", "wrong_context", "lookalike", "kept")
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
                      seed: int) -> tuple[list[Binding], list[ProbeSet]]:
    """The bindings written for one experiment and every probe set asked of that memory: the written
    forms, paraphrases, the context-free question, wrong contexts (other experiments' contexts and
    contexts no experiment uses) and look-alike words (never written) in a written context."""
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
    looks = lookalikes(lm.tokenizer, [w.word for w in words], seed, avoid=[w.word for w in suite.words])
    sets.append(probe_set("lookalike", [render(experiment.read, lk.word, experiment.contexts[i % 2])
                                        for i, lk in enumerate(looks)]))
    return binds, sets


def fact_probes() -> ProbeSet:
    """Every fact prompt of the pool; `kept` scores only those the plain model gets right."""
    facts = fact_pool()
    return probe_set("kept", [unrelated_prompt(f.prompt) for f in facts], [f.answer for f in facts],
                     [None] * len(facts))


def run_bench(lm: FrozenLM, suite: Suite, cal: Calibration, geometry: KeyGeometry, experiments=None,
              modes=MODES, words_per_experiment: int | None = None, progress=None, should_stop=None,
              on_row=None) -> tuple[list[Row], Timing]:
    """Score test words. `progress(done, total)`; `should_stop()` (polled after every forward batch)
    ends early, keeping finished rows."""
    timing, rows, post = Timing(), [], post_figures()
    chosen = [suite.experiment(name) for name in experiments] if experiments else suite.experiments
    words = suite.split("test")[:words_per_experiment] if words_per_experiment else suite.split("test")
    plan = [experiment_probes(lm, suite, exp, words, cal.seed) for exp in chosen]
    shared = [probe_set("unrelated", [unrelated_prompt(q) for q in suite.unrelated]), fact_probes()]
    total = len(unique_prompts([p for s in shared for p in s.prompts]
                               + [p for binds, sets in plan for p in [b.write for b in binds]
                                  + [q for s in sets for q in s.prompts]]))
    done, states_of = [0], {}
    bank0 = empty_bank(lm, cal)

    def tick(n):
        done[0] += n
        if progress:
            progress(done[0], total)
        if should_stop and should_stop():
            raise Stopped

    def forward(prompts):  # one forward pass per prompt not seen before
        new = [p for p in unique_prompts(prompts) if p not in states_of]
        start = time.perf_counter()
        if new:
            got = prompt_states(lm, bank0, new, progress=tick)
            states_of.update({p: got.select(slice(i, i + 1)) for i, p in enumerate(new)})
        timing.forward_s += time.perf_counter() - start
        timing.forward_passes += len(new)
        return PromptStates.cat([states_of[p] for p in prompts]) if prompts else None

    try:
        shared_states = {s.metric: forward(list(s.prompts)) for s in shared}
        facts = shared[1]
        base_facts = lm.logits(shared_states["kept"].final).argmax(-1)
        keep = [i for i, f in enumerate(facts.targets) if answer_matches(lm.tokenizer, int(base_facts[i]), f)]
        shared[1] = probe_set("kept", [facts.prompts[i] for i in keep], [facts.targets[i] for i in keep],
                              [None] * len(keep))
        shared_states["kept"] = shared_states["kept"].select(torch.tensor(keep, dtype=torch.long))
        for exp, (binds, sets) in zip(chosen, plan):
            write_states = forward([b.write for b in binds])
            set_states = {s.metric: forward(list(s.prompts)) for s in sets}
            start = time.perf_counter()
            bank = empty_bank(lm, cal)
            for entry in make_entries(lm, bank, write_states, [b.word for b in binds], [b.context for b in binds],
                                      [b.label for b in binds], [b.write for b in binds]):
                bank.add(entry)
            for mode in modes:
                for s, st in [(s, set_states[s.metric]) for s in sets] + [(s, shared_states[s.metric]) for s in shared]:
                    row = _score(lm, bank, geometry, cal, exp.name, mode, s, st, post)
                    rows.append(row)
                    if on_row:
                        on_row(row)
                    if s.metric == "unrelated":  # unchanged: the same answers, another rule
                        row = _score(lm, bank, geometry, cal, exp.name, mode,
                                     probe_set("unchanged", s.prompts, s.targets, s.contexts), st, post)
                        rows.append(row)
                        if on_row:
                            on_row(row)
            timing.other_s += time.perf_counter() - start
    except Stopped:
        pass
    return rows, timing


def unique_prompts(prompts) -> list[SlottedPrompt]:
    return list(dict.fromkeys(prompts))


def _score(lm, bank, geometry, cal, experiment: str, mode: str, probes: ProbeSet, states, post) -> Row:
    s = cal.settings(mode)
    n = len(probes)
    if n:
        got = answer(lm, bank, geometry, states, list(probes.contexts), mode, s.alpha, s.threshold)
        h = int(hit_mask(probes, got.ids, got.base_ids, LabelIndex.of(bank), lm.label_token).sum())
    else:
        h = 0
    lo, hi = wilson(h, n)
    return Row(lm.name, experiment, mode, probes.metric, n, h, h / max(1, n), lo, hi, cal.seed, cal.key_layer,
               cal.symbol_layer, cal.context_layer, cal.value_steps, s.alpha, s.threshold,
               post.get((experiment, mode, probes.metric)), cal.token_layer)


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
