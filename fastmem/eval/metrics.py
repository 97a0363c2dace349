"""What counts as a hit for every metric: one definition used by the benchmark, the calibration and the
Experiments page alike.

A probe set is a list of prompts asked of one memory; each metric has one hit rule:
- label       the answer is the expected label (write, read, paraphrase:<form>)
- word_label  the answer is any label bound to the asked word (plain, wrong_context): a leak
- any_label   the answer is any label in memory (unrelated, lookalike): a false fire
- unchanged   the answer is the plain model's answer (unchanged, kept)
- label_within the label appears, as a word, in the first WITHIN_TOKENS generated tokens (read_in_12: a
              chat turn, where the answer need not be the very next token)
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from fastmem.errors import SettingsError
from fastmem.memory.bank import MemoryBank
from fastmem.memory.prompts import SlottedPrompt

RULES = {"write": "label", "read": "label", "plain": "word_label", "unrelated": "any_label",
         "unchanged": "unchanged", "wrong_context": "word_label", "lookalike": "any_label", "kept": "unchanged",
         "sibling": "word_label", "swapped": "word_label", "read_in_12": "label_within"}
LOWER_IS_BETTER = ("plain", "unrelated", "wrong_context", "lookalike", "sibling", "swapped")
# Each metric in plain words, for the places that show results (the app's legend, the README).
MEANINGS = {
    "write": "the write statement itself now completes to the label",
    "read": "the question about a written word, in its written context, is answered with its label",
    "paraphrase:*": "the same question in another phrasing the calibration never saw",
    "typed:*": "the question typed as a person would (no template, capitals, a sentence before it...)",
    "plain": "a question with no context gets one of that word's labels (a leak)",
    "wrong_context": "the word asked in a context never written for it gets one of its labels (a leak)",
    "sibling": "the word asked in a sibling of its context (level 4 for level 1, east lab for north lab) leaks",
    "swapped": "word and context of two entries swapped round still gets a label (a leak)",
    "lookalike": "an unwritten word that looks like a written one (flicket for blicket) gets a label",
    "unrelated": "an unrelated question gets a label from memory",
    "unchanged": "the unrelated question's answer stays the plain model's",
    "kept": "a fact the plain model answers right keeps its answer",
    "read_in_12": "the chat turn's answer contains the label within 12 tokens",
}
WITHIN_TOKENS = 12
PARAPHRASE = "paraphrase:"


def rule(metric: str) -> str:
    if metric.startswith(PARAPHRASE):
        return "label"
    if metric not in RULES:
        raise SettingsError(f"Unknown metric {metric!r}.")
    return RULES[metric]


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER


@dataclass(frozen=True)
class ProbeSet:
    """Prompts scored under one metric. `targets`: the expected label per prompt (rule label), the asked
    word (rule word_label), else unused. `contexts`: context names for the oracle gate only."""

    metric: str
    prompts: tuple[SlottedPrompt, ...]
    targets: tuple[str | None, ...]
    contexts: tuple[str | None, ...]
    form: str = ""  # how the questions were phrased: "" for the suite's own forms, "typed:<name>" (`typed.py`)

    def __post_init__(self):
        rule(self.metric)
        if not len(self.prompts) == len(self.targets) == len(self.contexts):
            raise SettingsError(f"Probe set {self.metric}: prompts, targets and contexts differ in length.")

    def __len__(self) -> int:
        return len(self.prompts)


def probe_set(metric: str, prompts, targets=None, contexts=None, form: str = "") -> ProbeSet:
    prompts = tuple(prompts)
    n = len(prompts)
    return ProbeSet(metric, prompts, tuple(targets) if targets is not None else (None,) * n,
                    tuple(contexts) if contexts is not None else tuple(p.context for p in prompts), form)


@dataclass(frozen=True)
class LabelIndex:
    """The labels a memory holds, as token sequences, for the leak rules (built once per memory)."""

    by_word: dict[str, frozenset[tuple[int, ...]]]
    all_ids: frozenset[tuple[int, ...]]

    @classmethod
    def of(cls, bank: MemoryBank) -> "LabelIndex":
        by_word: dict[str, set[tuple[int, ...]]] = {}
        for e in bank.entries:
            by_word.setdefault(e.word, set()).add(e.label_ids)
        return cls({w: frozenset(s) for w, s in by_word.items()}, frozenset(e.label_ids for e in bank.entries))

    def in_play(self, probes: "ProbeSet", label_ids) -> set[tuple[int, ...]]:
        """Every label sequence a verdict on `probes` may depend on: the memory's and the expected ones."""
        targets = {label_ids(t) for t in probes.targets} if rule(probes.metric) in ("label", "label_within") else set()
        return set(self.all_ids) | targets


def hit_mask(probes: ProbeSet, ids: torch.Tensor, base_ids: torch.Tensor, labels: LabelIndex, lm) -> torch.Tensor:
    """[N] bool: which answers are hits under the probe set's metric rule. `ids`/`base_ids` [N, T] are the
    greedy answers with and without memory (`readout.Readout`; -1 past what was decoded). A label is hit when
    the answer starts with its tokens, or reads as it (the same text, stripped and in any case: ` milk` and
    `milk` at the start of a chat turn are one answer to a person); `lm` gives labels' tokens and decodes."""
    from fastmem.memory.readout import PAD

    kind = rule(probes.metric)
    if ids.dim() == 1:
        ids, base_ids = ids.unsqueeze(1), base_ids.unsqueeze(1)
    if kind == "unchanged":  # equal wherever both were decoded (readout decodes both where they may differ)
        return ((ids == base_ids) | (ids == PAD) | (base_ids == PAD)).all(1)
    got = [[t for t in row if t != PAD] for row in ids.tolist()]
    if kind == "label_within":
        texts = [lm.tokenizer.decode(row[:WITHIN_TOKENS]) for row in got]
        return torch.tensor([bool(re.search(rf"(?<!\w){re.escape(t.strip())}(?!\w)", text, re.IGNORECASE))
                             for text, t in zip(texts, probes.targets)], dtype=torch.bool)
    reads = _Reader(lm)
    if kind == "label":
        return torch.tensor([reads.says(g, lm.label_tokens(t)) for g, t in zip(got, probes.targets)],
                            dtype=torch.bool)
    if kind == "word_label":
        return torch.tensor([any(reads.says(g, s) for s in labels.by_word.get(t, ())) for g, t in
                             zip(got, probes.targets)], dtype=torch.bool)
    return torch.tensor([any(reads.says(g, s) for s in labels.all_ids) for g in got], dtype=torch.bool)


class _Reader:
    """Whether an answer says a label: its tokens, or the same text (stripped, case-folded)."""

    def __init__(self, lm):
        self.decode, self.texts = lm.tokenizer.decode, {}

    def text(self, ids: tuple[int, ...]) -> str:
        if ids not in self.texts:
            self.texts[ids] = self.decode(list(ids)).strip().casefold()
        return self.texts[ids]

    def says(self, answer: list[int], label: tuple[int, ...]) -> bool:
        head = tuple(answer[:len(label)])
        return head == tuple(label) or (len(head) == len(label) and self.text(head) == self.text(tuple(label)))


def decode_length(metric: str) -> int | None:
    """How far a metric's rule reads an answer: past the label only for the chat turn's `label_within`."""
    return WITHIN_TOKENS if rule(metric) == "label_within" else None


def read_answers(lm, bank: MemoryBank, probes: ProbeSet, got, alpha: float):
    """The answers of an `engine.Answer` to a probe set, as the app gives them (`readout.answers`), decoded as
    far as the metric's rule reads."""
    from fastmem.memory.readout import answers

    return answers(lm, bank, [lm.encode(p).ids for p in probes.prompts], got.ids, got.base_ids,
                   got.retrieved.injected, alpha, decode_length(probes.metric))


class Sweep:
    """Rates of several probe sets as alpha and the threshold move, retrieving once per set: the plain logits
    and each retrieved value's logit change are kept, and every (alpha, threshold) is one injection through
    the same gate (`retrieval.passes`) and answer rule (`readout.answers`) as a single question (calibration
    chooses with it on dev probes, `curve` draws test probes with it)."""

    def __init__(self, lm, bank: MemoryBank, geometry, mode: str, sets):
        from fastmem.memory.engine import lookup
        from fastmem.model.decode import next_tokens

        self.lm, self.bank, self.labels = lm, bank, LabelIndex.of(bank)
        unembedding = lm.unembedding.detach().float().cpu()
        self.scored = []
        for probes, states in sets:
            if not len(probes):
                continue
            got = lookup(lm, mode, states, bank, geometry, probes.contexts, None, gate=False)
            base = lm.logits(states.final)
            prompt_ids = [lm.encode(p).ids for p in probes.prompts]
            self.scored.append((probes, got, base, next_tokens(base), got.values @ unembedding.T, prompt_ids))

    def rates(self, alpha: float, threshold: float | None) -> dict[str, float]:
        from fastmem.memory.engine import Injection
        from fastmem.memory.readout import answers
        from fastmem.memory.retrieval import passes

        out = {}
        for probes, got, base, base_ids, delta, prompt_ids in self.scored:
            on = (got.chosen >= 0) & passes(got.best, threshold)
            rows = on.nonzero().squeeze(1)
            ids = Injection(rows, delta, rows, alpha).ids(base, base_ids)
            said = answers(self.lm, self.bank, prompt_ids, ids, base_ids, got.injected.masked_fill(~on, -1), alpha,
                           decode_length(probes.metric))
            out[probes.metric] = hit_mask(probes, said.ids, said.base_ids, self.labels, self.lm).float().mean().item()
        return out
