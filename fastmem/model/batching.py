"""Forward passes in chunks of bounded size, and the buffers their states are gathered into.

A chunk holds at most `TOKEN_BUDGET` tokens (rows times padded length): the model's states at every layer
exist for one chunk at a time, and only the layers asked for are kept, written straight into buffers of the
final size (no per-chunk parts joined and reordered at the end, which held the states three times over).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from fastmem.errors import ResourceError

# 4,096 tokens: SmolLM2's states at its 31 layers are 290 MB a chunk (scripts/request_peaks.py measures the
# whole request); a batch of 64 ordinary statements (~15 tokens) is one chunk, as before.
TOKEN_BUDGET = 4096


def plan_chunks(lengths: list[int], batch_size: int = 64, token_budget: int = TOKEN_BUDGET) -> list[list[int]]:
    """Indices of the prompts, shortest first (less padding), grouped so that each chunk has at most
    `batch_size` rows and rows x its longest length <= `token_budget` (a longer prompt goes alone)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    chunks: list[list[int]] = []
    for i in order:
        if chunks and len(chunks[-1]) < batch_size and (len(chunks[-1]) + 1) * lengths[i] <= token_budget:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


@contextmanager
def bounded_memory(what: str):
    """The allocator's refusal, as an error a user can read (the request is dropped, nothing is changed)."""
    try:
        yield
    except torch.OutOfMemoryError as exc:
        raise ResourceError(f"{what} needs more memory than this machine has; nothing was changed. "
                            "Try fewer rows or shorter text.") from exc
    except RuntimeError as exc:
        if "can't allocate" not in str(exc) and "out of memory" not in str(exc).lower():
            raise
        raise ResourceError(f"{what} needs more memory than this machine has; nothing was changed. "
                            "Try fewer rows or shorter text.") from exc


class StateBuffer:
    """The states `FrozenLM.states` returns, filled chunk by chunk at each prompt's own row."""

    def __init__(self, n: int, d: int, layers: tuple[int, ...], token_layers: tuple[int, ...], span_width: int):
        self.layers, self.token_layers = layers, token_layers
        self.word = torch.zeros(n, len(layers), d)
        self.context = torch.zeros(n, len(layers), d)
        self.last = torch.zeros(n, len(layers), d)
        self.final = torch.zeros(n, d)
        width = max(1, span_width)
        self.tokens = [(torch.zeros(n, len(token_layers), width, d), torch.zeros(n, width, dtype=torch.bool))
                       for _ in range(2)] if token_layers else None

    def fill(self, rows: list[int], chunk, hidden: tuple[torch.Tensor, ...], width: int, max_span: int) -> None:
        """Copy out one chunk: `hidden` is the model's tuple of states per layer ([B, T, d] each), read one
        layer at a time (never all layers stacked: that would copy the chunk's states again)."""
        at = torch.tensor(rows, dtype=torch.long)
        device = hidden[0].device
        shifts = [width - len(e.ids) for e in chunk]
        word_pos = torch.tensor([s + e.word_positions[-1] for s, e in zip(shifts, chunk)], device=device)
        weights = torch.zeros(len(chunk), width, device=device)  # the mean over each context phrase
        for b, (s, e) in enumerate(zip(shifts, chunk)):
            weights[b, [s + i for i in e.context_positions]] = 1.0 / len(e.context_positions)
        batch = torch.arange(len(chunk), device=device)
        for k, layer in enumerate(self.layers):
            h = hidden[layer].float()
            self.word[at, k] = h[batch, word_pos].cpu()
            self.context[at, k] = torch.einsum("bt,btd->bd", weights, h).cpu()
            self.last[at, k] = h[:, -1].cpu()
        self.final[at] = hidden[-1][:, -1].float().cpu()
        if self.tokens is not None:
            for (states, mask), attr in zip(self.tokens, ("word_positions", "context_positions")):
                for b, (row, s, e) in enumerate(zip(rows, shifts, chunk)):
                    span = [s + i for i in getattr(e, attr)[-max_span:]]
                    for k, layer in enumerate(self.token_layers):
                        states[row, k, :len(span)] = hidden[layer][b, span].float().cpu()
                    mask[row, :len(span)] = True
