"""Retrieval: score memory entries against query keys, pick top-1 per mode, return the value to inject.

Modes (see README):
- none           the plain model
- both_top1      one memory of all contexts, top-1 cosine of projected word keys
- context_gate   oracle: only the bank of the question's context, then top-1 by projected key
- raw_both_top1  top-1 cosine of raw hidden word keys
- average        the mean value of all entries of the top-1 entry's word (conflicts averaged away)
- dual_key       symbol similarity x context similarity, both cosines of raw hidden states taken
                 relative to a context-free baseline (see README for why)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import SettingsError
from .lm import PromptStates
from .memory import MemoryBank
from .projector import KeyProjector

MODES = ("none", "both_top1", "context_gate", "raw_both_top1", "average", "dual_key")
NEEDS_PROJECTOR = ("both_top1", "context_gate", "average")


@dataclass(frozen=True)
class KeyGeometry:
    """What retrieval needs besides the memory, fitted on the training split only."""

    projector: KeyProjector | None
    symbol_baseline: torch.Tensor  # [d] mean symbol key of context-free training prompts
    context_baseline: torch.Tensor  # [d] mean context key of context-free training prompts


@dataclass(frozen=True)
class QueryKeys:
    key: torch.Tensor  # [N, d] word key at the key layer
    symbol: torch.Tensor  # [N, d] word key at the symbol layer
    context: torch.Tensor  # [N, d] context key at the context layer
    contexts: tuple[str | None, ...]  # context names, used only by the oracle gate

    @classmethod
    def from_states(cls, states: PromptStates, bank: MemoryBank, contexts) -> "QueryKeys":
        return cls(states.word[:, bank.key_layer], states.word[:, bank.symbol_layer],
                   states.context[:, bank.context_layer], tuple(contexts))


@dataclass(frozen=True)
class Retrieved:
    scores: torch.Tensor  # [N, M]; -inf where the gate excludes an entry
    chosen: torch.Tensor  # [N] entry index, -1 where nothing is injected
    best: torch.Tensor  # [N] best score (-inf for an empty memory)
    values: torch.Tensor  # [N, d] value to inject (zeros where nothing is)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise SettingsError(f"Unknown mode {mode!r}: choose one of {', '.join(MODES)}.")
    return mode


def check_threshold(threshold: float | None) -> float | None:
    if threshold is None:
        return None
    t = float(threshold)
    if not (-1.0 <= t <= 1.0):  # also rejects NaN
        raise SettingsError(f"Threshold {threshold!r} must be a cosine in [-1, 1] (or off).")
    return t


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T


def score_entries(mode: str, query: QueryKeys, bank: MemoryBank, geometry: KeyGeometry) -> torch.Tensor:
    """Similarity [N, M] of each query to each entry under `mode`."""
    check_mode(mode)
    stacked = bank.stacked()
    n, m = query.key.shape[0], len(bank)
    if mode == "none" or m == 0:
        return torch.full((n, m), float("-inf"))
    if mode == "raw_both_top1":
        return _cos(query.key, stacked["key"])
    if mode == "dual_key":
        symbol = _cos(query.symbol - geometry.symbol_baseline, stacked["symbol_key"] - geometry.symbol_baseline)
        context = _cos(query.context - geometry.context_baseline,
                       stacked["context_key"] - geometry.context_baseline)
        return symbol.clamp(min=0) * context.clamp(min=0)
    if geometry.projector is None:
        raise SettingsError(f"Mode {mode} needs a trained key projector; none is loaded.")
    with torch.no_grad():
        scores = geometry.projector(query.key) @ geometry.projector(stacked["key"]).T
    if mode == "context_gate":
        contexts = [e.context for e in bank.entries]
        gate = torch.tensor([[c == q for c in contexts] for q in query.contexts], dtype=torch.bool)
        scores = scores.masked_fill(~gate.reshape(n, m), float("-inf"))
    return scores


def retrieve(mode: str, query: QueryKeys, bank: MemoryBank, geometry: KeyGeometry,
             threshold: float | None = None) -> Retrieved:
    threshold = check_threshold(threshold)
    scores = score_entries(mode, query, bank, geometry)
    n, d = query.key.shape[0], bank.hidden_size
    if scores.shape[1] == 0:
        return Retrieved(scores, torch.full((n,), -1), torch.full((n,), float("-inf")), torch.zeros(n, d))
    best, chosen = scores.max(dim=1)
    off = torch.isinf(best) if threshold is None else (best < threshold) | torch.isinf(best)
    chosen = chosen.masked_fill(off, -1)
    values = bank.stacked()["value"]
    if mode == "average":  # mean of every value bound to the retrieved entry's word
        words = [e.word for e in bank.entries]
        same = torch.tensor([[w == words[c] for w in words] if c >= 0 else [False] * len(words)
                             for c in chosen.tolist()], dtype=torch.float32).reshape(n, -1)
        picked = same @ values / same.sum(1, keepdim=True).clamp(min=1)
    else:
        picked = values[chosen.clamp(min=0)] * (chosen >= 0).unsqueeze(1)
    return Retrieved(scores, chosen, best, picked)
