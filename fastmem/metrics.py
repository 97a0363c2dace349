"""What counts as a hit for every metric: one definition used by the benchmark, the calibration and the
Experiments page alike.

A probe set is a list of prompts asked of one memory; each metric has one hit rule:
- label       the answer is the expected label (write, read, paraphrase:<form>)
- word_label  the answer is any label bound to the asked word (plain, wrong_context): a leak
- any_label   the answer is any label in memory (unrelated, lookalike): a false fire
- unchanged   the answer is the plain model's answer (unchanged, kept)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import SettingsError
from .memory import MemoryBank
from .prompts import SlottedPrompt

RULES = {"write": "label", "read": "label", "plain": "word_label", "unrelated": "any_label",
         "unchanged": "unchanged", "wrong_context": "word_label", "lookalike": "any_label", "kept": "unchanged"}
LOWER_IS_BETTER = ("plain", "unrelated", "wrong_context", "lookalike")
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

    def __post_init__(self):
        rule(self.metric)
        if not len(self.prompts) == len(self.targets) == len(self.contexts):
            raise SettingsError(f"Probe set {self.metric}: prompts, targets and contexts differ in length.")

    def __len__(self) -> int:
        return len(self.prompts)


def probe_set(metric: str, prompts, targets=None, contexts=None) -> ProbeSet:
    prompts = tuple(prompts)
    n = len(prompts)
    return ProbeSet(metric, prompts, tuple(targets) if targets is not None else (None,) * n,
                    tuple(contexts) if contexts is not None else tuple(p.context for p in prompts))


@dataclass(frozen=True)
class LabelIndex:
    """The labels a memory holds, for the leak rules (built once per memory)."""

    by_word: dict[str, frozenset[int]]
    all_ids: frozenset[int]

    @classmethod
    def of(cls, bank: MemoryBank) -> "LabelIndex":
        by_word: dict[str, set[int]] = {}
        for e in bank.entries:
            by_word.setdefault(e.word, set()).add(e.label_id)
        return cls({w: frozenset(s) for w, s in by_word.items()}, frozenset(e.label_id for e in bank.entries))


def hit_mask(probes: ProbeSet, ids: torch.Tensor, base_ids: torch.Tensor, labels: LabelIndex,
             label_id) -> torch.Tensor:
    """[N] bool: which answers `ids` (with memory) are hits under the probe set's metric rule.
    `label_id(text)` turns an expected label into its token id."""
    kind = rule(probes.metric)
    if kind == "unchanged":
        return ids == base_ids
    if kind == "label":
        return ids == torch.tensor([label_id(t) for t in probes.targets], dtype=torch.long)
    got = ids.tolist()
    if kind == "word_label":
        return torch.tensor([g in labels.by_word.get(t, ()) for g, t in zip(got, probes.targets)], dtype=torch.bool)
    return torch.tensor([g in labels.all_ids for g in got], dtype=torch.bool)


class Sweep:
    """Rates of several probe sets as alpha and the threshold move, retrieving once per set: the plain logits
    and each retrieved value's logit change are kept, and every (alpha, threshold) is one injection
    (calibration chooses with it on dev probes, `curve` draws test probes with it)."""

    def __init__(self, lm, bank: MemoryBank, geometry, mode: str, sets):
        from .retrieval import QueryKeys, retrieve

        self.lm, self.labels = lm, LabelIndex.of(bank)
        unembedding = lm.unembedding.detach().float().cpu()
        self.scored = []
        for probes, states in sets:
            if not len(probes):
                continue
            got = retrieve(mode, QueryKeys.from_states(states, bank, probes.contexts), bank, geometry, None)
            base = lm.logits(states.final)
            self.scored.append((probes, got, base, got.values @ unembedding.T))

    def rates(self, alpha: float, threshold: float | None) -> dict[str, float]:
        from .engine import inject

        out = {}
        for probes, got, base, delta in self.scored:
            on = got.chosen >= 0
            if threshold is not None:
                on = on & (got.best >= threshold)
            ids = inject(base, delta, on, alpha).argmax(-1)
            out[probes.metric] = hit_mask(probes, ids, base.argmax(-1), self.labels, self.lm.label_token).float().mean().item()
        return out
