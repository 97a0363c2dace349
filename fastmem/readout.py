"""Answers as token sequences, so that labels of several tokens can be scored.

The first answer token comes from one batched forward pass (`engine.answer`). Later tokens are decoded
only where they can change a verdict: rows whose injected entry has a multi-token label, and rows whose
first token starts some multi-token label in play. Everywhere else the answer after the first token is
the plain model's on both sides, so one token decides. With one-token labels only, nothing is decoded.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .decode import greedy
from .memory import MemoryBank

PAD = -1  # past the decoded tokens


@dataclass(frozen=True)
class Readout:
    ids: torch.Tensor  # [N, T] greedy answer with memory; PAD past what was decoded
    base_ids: torch.Tensor  # [N, T] the plain model's greedy answer

    @property
    def length(self) -> int:
        return self.ids.shape[1]


def tail_corrections(bank: MemoryBank, chosen: torch.Tensor, steps: int) -> torch.Tensor:
    """[N, steps, d]: the chosen entries' corrections for their 2nd, 3rd, ... label tokens (zeros past a
    label's end and where nothing was chosen)."""
    out = torch.zeros(len(chosen), steps, bank.hidden_size)
    for row, entry in enumerate(chosen.tolist()):
        if entry >= 0 and bank.entries[entry].tail_ids:
            tail = bank.entries[entry].tail_values[:steps]
            out[row, :len(tail)] = tail
    return out


def read_out(lm, bank: MemoryBank, prompts, first: torch.Tensor, base_first: torch.Tensor, chosen: torch.Tensor,
             alpha: float, in_play, rows: list[list[int]] | None = None, length: int = 1) -> Readout:
    """Greedy answers long enough to hold the longest label sequence `in_play` (the targets and the
    memory's labels). `first`/`base_first` [N]: first tokens with and without memory; `chosen` [N]: the
    entry whose values were injected per row (-1: none); `rows`: the token rows `first` came from, when
    they are not the prompts' own (the in-context baselines); `length`: decode every row at least this far
    (a rule that looks past the first tokens)."""
    in_play = [tuple(s) for s in in_play]
    longest = max([len(s) for s in in_play] + [length])
    ids = torch.full((len(first), longest), PAD, dtype=torch.long)
    base = torch.full((len(first), longest), PAD, dtype=torch.long)
    ids[:, 0], base[:, 0] = first, base_first
    if longest == 1 or not len(first):
        return Readout(ids, base)
    starts = torch.tensor(sorted({s[0] for s in in_play if len(s) > 1}), dtype=torch.long)
    has_tail = torch.tensor([c >= 0 and bool(bank.entries[c].tail_ids) for c in chosen.tolist()], dtype=torch.bool)
    mem_rows = (has_tail & (alpha != 0.0)) | torch.isin(first, starts) | (length > 1)
    base_rows = torch.isin(base_first, starts) | (mem_rows & (first == base_first)) | (length > 1)
    mem_at, base_at = mem_rows.nonzero().flatten().tolist(), base_rows.nonzero().flatten().tolist()
    if not mem_at and not base_at:
        return Readout(ids, base)
    steps = longest - 1
    tokens = [rows[i] if rows is not None else lm.encode(prompts[i]).ids for i in mem_at] + [
        lm.encode(prompts[i]).ids for i in base_at]
    corrections = torch.cat([tail_corrections(bank, chosen[mem_at], steps), torch.zeros(len(base_at), steps,
                                                                                      bank.hidden_size)])
    answers = greedy(lm, tokens, [int(first[i]) for i in mem_at] + [int(base_first[i]) for i in base_at], steps,
                     corrections, alpha)
    for (target, i), answer in zip([(ids, i) for i in mem_at] + [(base, i) for i in base_at], answers):
        target[i, :len(answer)] = torch.tensor(answer[:longest], dtype=torch.long)
    return Readout(ids, base)


def starts_with(row: list[int], label: tuple[int, ...]) -> bool:
    return len(row) >= len(label) and tuple(row[:len(label)]) == label


def read_answers(lm, bank: MemoryBank, probes, got, alpha: float, labels) -> Readout:
    """The readout of an `engine.Answer` to a probe set (`metrics.ProbeSet`), for its metric's rule."""
    from .metrics import WITHIN_TOKENS, rule

    return read_out(lm, bank, probes.prompts, got.ids, got.base_ids, got.retrieved.injected, alpha,
                    labels.in_play(probes, lm.label_tokens),
                    length=WITHIN_TOKENS if rule(probes.metric) == "label_within" else 1)


def decoded(ids: torch.Tensor) -> list[int]:
    """The decoded tokens of one readout row."""
    return [int(t) for t in ids.tolist() if t != PAD]
