"""The post's experiment as a benchmark: every experiment x mode x metric, with Wilson intervals.

Each unique prompt goes through the model once; all modes are then scored from the cached states (the correction
is added after the final norm), so the model's forward time dominates (`scoring.Timing` says where the rest went).
"""
from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict

from fastmem.eval.calibrate import Calibration, empty_bank
from fastmem.eval.metrics import LabelIndex, ProbeSet, probe_set
from fastmem.eval.probesets import experiment_probes, fact_probes, qualified_facts
from fastmem.eval.scoring import Row, StateStore, Stopped, Timing, post_figures, score_probes, unique_prompts
from fastmem.eval.suite import Binding, Suite
from fastmem.memory.engine import write_entries
from fastmem.memory.keying import key_question
from fastmem.memory.modes import MODES, get_mode, mode_names
from fastmem.model.decode import next_tokens
from fastmem.model.lm import FrozenLM

BENCH_MODES = mode_names(answering=True)  # the memory's modes and the in-context baselines
METRICS = ("write", "read", "plain", "unrelated", "unchanged", "wrong_context", "lookalike", "kept", "sibling",
           "swapped")


def run_bench(lab, suite: Suite | None = None, experiments=None, modes=MODES, words_per_experiment: int | None = None,
              progress=None, should_stop=None, on_row=None, typed: bool = False,
              point: str | None = None) -> tuple[list[Row], Timing]:
    """Score the test words of `suite` (default: the lab's) in fresh memories. `progress(done, total)`;
    `should_stop()` (polled after every forward batch) ends early, keeping finished rows; `typed` adds the
    typed probe sets (`eval.typed`); `point`: every mode at this operating point (default: each mode at its
    own, `calibrate.default_point`)."""
    lm, cal, geometry, suite = lab.lm, lab.calibration, lab.geometry, suite or lab.suite
    rows, post = [], post_figures()
    chosen = [suite.experiment(name) for name in experiments] if experiments else suite.experiments
    words = suite.split("test")[:words_per_experiment] if words_per_experiment else suite.split("test")
    plan = [experiment_probes(lm, suite, exp, words, cal.seed, typed) for exp in chosen]
    forms = suite.question_forms()  # keyed as the app keys a typed question
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
    clock = Timing()
    try:
        unrelated, facts = shared
        fact_states = store(facts.prompts)
        kept, keep = qualified_facts(lm, facts, next_tokens(lm.logits(fact_states.final)))
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
            with clock.measure("forward_s"):  # the output head and the codebook's keys are the model's passes too
                base = [lm.logits(st.final) for _, _, st in scored]  # the plain model's, shared by every mode
                base_ids = [next_tokens(b) for b in base]
                for mode in modes:
                    get_mode(mode).warm(lm, bank)
            for mode in modes:
                for (name, s, st), b, ids in zip(scored, base, base_ids):
                    for row in score_probes(lm, bank, geometry, cal, name, mode, s, st, b, labels, post, point,
                                            clock, base_ids=ids):
                        rows.append(row)
                        if on_row:
                            on_row(row)
    except Stopped:
        pass
    timing = clock
    timing.forward_s += store.forward_s
    timing.forward_passes = store.forward_passes
    timing.other_s = time.perf_counter() - start - timing.total_s
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
