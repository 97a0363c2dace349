"""Answers as token sequences, by the one rule the app, the benchmark and the calibration share.

The first answer token comes from one batched forward pass (`engine.answer`). An answer is as long as the
label of the entry injected into it (one token when none was), and the plain answer as long: what `Lab.ask`
shows. Later tokens are decoded only for rows whose injected label has several tokens; with one-token labels
nothing is decoded.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastmem.model.decode import greedy
from fastmem.memory.bank import MemoryBank

PAD = -1  # past the decoded tokens


@dataclass(frozen=True)
class Readout:
    ids: torch.Tensor  # [N, T] greedy answer with memory; PAD past what was decoded
    base_ids: torch.Tensor  # [N, T] the plain model's greedy answer

    @property
    def length(self) -> int:
        return self.ids.shape[1]


def label_end(bank: MemoryBank, entry: int) -> int:
    """The generation step after the injected entry's label (-1 when nothing was injected): where its word ends."""
    return len(bank.entries[entry].label_ids) - 1 if entry >= 0 else -1


def tail_corrections(bank: MemoryBank, chosen: torch.Tensor, steps: int) -> torch.Tensor:
    """[N, steps, d]: the chosen entries' corrections for their 2nd, 3rd, ... label tokens (zeros past a
    label's end and where nothing was chosen)."""
    out = torch.zeros(len(chosen), steps, bank.hidden_size)
    for row, entry in enumerate(chosen.tolist()):
        if entry >= 0 and bank.entries[entry].tail_ids:
            tail = bank.entries[entry].tail_values[:steps]
            out[row, :len(tail)] = tail
    return out


def answers(lm, bank: MemoryBank, rows: list[list[int]], first: torch.Tensor, base_first: torch.Tensor,
            injected: torch.Tensor, alpha: float, length: int | None = None) -> Readout:
    """Greedy answers by the app's rule (`Lab.ask`): each row as long as the label of the entry whose values it
    got (one token where none was injected), the label's later corrections added step by step; the plain
    answer as long. `rows`: each question's token ids; `first`/`base_first` [N]: the first answer tokens with and
    without memory; `injected` [N]: the entry per row, -1 for none. `length`: every row decoded to this many
    tokens instead (a rule that reads past the label: the chat turn; the in-context baselines)."""
    n = len(first)
    sizes = [length if length else (len(bank.entries[e].label_ids) if e >= 0 else 1) for e in injected.tolist()]
    longest = max(sizes, default=1)
    ids = torch.full((n, longest), PAD, dtype=torch.long)
    base = torch.full((n, longest), PAD, dtype=torch.long)
    ids[:, 0], base[:, 0] = first, base_first
    at = [i for i in range(n) if sizes[i] > 1]
    if not at:
        return Readout(ids, base)
    steps = max(sizes[i] for i in at) - 1
    corrections = torch.cat([tail_corrections(bank, injected[at], steps), torch.zeros(len(at), steps,
                                                                                     bank.hidden_size)])
    # with memory, the injected label ends its word (decode.greedy); the plain side decodes freely
    ends = [label_end(bank, int(injected[i])) for i in at] + [-1] * len(at)
    decoded_rows = greedy(lm, [rows[i] for i in at] * 2, [int(first[i]) for i in at] + [int(base_first[i]) for i in at],
                          steps, corrections, alpha, word_ends=ends)
    for k, i in enumerate(at):
        mem, plain = decoded_rows[k][:sizes[i]], decoded_rows[len(at) + k][:sizes[i]]
        ids[i, :len(mem)] = torch.tensor(mem, dtype=torch.long)
        base[i, :len(plain)] = torch.tensor(plain, dtype=torch.long)
    return Readout(ids, base)


def starts_with(row: list[int], label: tuple[int, ...]) -> bool:
    return len(row) >= len(label) and tuple(row[:len(label)]) == label


def decoded(ids: torch.Tensor) -> list[int]:
    """The decoded tokens of one readout row."""
    return [int(t) for t in ids.tolist() if t != PAD]
