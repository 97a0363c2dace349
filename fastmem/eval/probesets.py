"""The probe sets asked of a memory, built in one place for every run: an experiment's (its written forms,
paraphrases, the context-free question, never-written contexts, look-alikes, siblings and swapped contexts, and
as typed), a sample's (capacity and baseline runs), and the fact prompts the plain model already answers."""
from __future__ import annotations

import torch

from fastmem.eval.metrics import PARAPHRASE, ProbeSet, probe_set
from fastmem.eval.probes import answer_matches, fact_pool, lookalikes
from fastmem.eval.series import digit_lookalikes, siblings, swapped
from fastmem.eval.suite import Binding, ExperimentSpec, Suite, WordSpec, bindings
from fastmem.eval.typed import typed_probes
from fastmem.memory.keying import key_question
from fastmem.memory.prompts import render
from fastmem.model.decode import next_tokens
from fastmem.model.lm import FrozenLM


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
                             suite.question_forms())
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


def kept_facts(lm: FrozenLM) -> ProbeSet:
    """The fact prompts the plain model answers right, run once."""
    facts = fact_probes()
    return qualified_facts(lm, facts, next_tokens(lm.logits(lm.states(list(facts.prompts)).final)))[0]


def sample_probes(lm: FrozenLM, suite: Suite, experiment: ExperimentSpec, asked: list[tuple[str, int]],
                  labels: dict[str, list[str]], written: list[str], seed: int, plain: bool = True) -> list[ProbeSet]:
    """A sample of a memory's bindings asked (`asked`: (word, context index)): each in its written context, each
    word in a never-written context and as a look-alike (one kind per word, in turn) in a written one, and
    (with `plain`) without context."""
    words = list(dict.fromkeys(w for w, _ in asked))
    ctx, unseen = experiment.contexts, suite.unseen_contexts
    looks = lookalikes(lm.tokenizer, words, seed, avoid=list(written) + [w.word for w in suite.words])
    one_kind = [looks[3 * i + i % 3] for i in range(len(words))]
    sets = [
        probe_set("read", [render(experiment.read, w, ctx[i]) for w, i in asked], [labels[w][i] for w, i in asked]),
        probe_set("wrong_context", [render(experiment.read, w, unseen[k % len(unseen)]) for k, w in enumerate(words)],
                  words),
        probe_set("lookalike", [render(experiment.read, lk.word, ctx[k % 2]) for k, lk in enumerate(one_kind)]),
    ]
    if plain:
        sets.append(probe_set("plain", [render(suite.plain, w) for w in words], words))
    return sets
