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

import hashlib
import numbers
from dataclasses import dataclass
from functools import cached_property

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

    @cached_property
    def identity(self) -> str:
        """Names derived entry tensors cached in a memory (projected keys depend on the geometry)."""
        digest = hashlib.sha256(self.symbol_baseline.numpy().tobytes() + self.context_baseline.numpy().tobytes())
        return f"{self.projector.identity if self.projector else 'none'}-{digest.hexdigest()[:12]}"


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


def as_number(value, name: str) -> float:
    """A real number as float; text, booleans and anything else are a SettingsError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SettingsError(f"{name} {value!r} is not a number.")
    return float(value)


def check_threshold(threshold: float | None) -> float | None:
    if threshold is None:
        return None
    t = as_number(threshold, "Threshold")
    if not (-1.0 <= t <= 1.0):  # also rejects NaN
        raise SettingsError(f"Threshold {threshold!r} must be a cosine in [-1, 1] (or off).")
    return t


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def _ids(names: list[str]) -> tuple[torch.Tensor, dict[str, int]]:
    index: dict[str, int] = {}
    return torch.tensor([index.setdefault(n, len(index)) for n in names], dtype=torch.long), index


def score_entries(mode: str, query: QueryKeys, bank: MemoryBank, geometry: KeyGeometry) -> torch.Tensor:
    """Similarity [N, M] of each query to each entry under `mode`.

    Entry-side tensors (unit keys, projected keys) are cached in the memory until it changes, so a
    question costs one [N, d] x [d, M] product even for 100,000 entries.
    """
    check_mode(mode)
    n, m = query.key.shape[0], len(bank)
    if mode == "none" or m == 0:
        return torch.full((n, m), float("-inf"))
    if mode == "raw_both_top1":
        return _unit(query.key) @ bank.cached("raw", lambda s: _unit(s["key"])).T
    g = geometry.identity
    if mode == "dual_key":
        sym_base, ctx_base = geometry.symbol_baseline, geometry.context_baseline
        symbol = _unit(query.symbol - sym_base) @ bank.cached(
            f"sym:{g}", lambda s: _unit(s["symbol_key"] - sym_base)).T
        context = _unit(query.context - ctx_base) @ bank.cached(
            f"ctx:{g}", lambda s: _unit(s["context_key"] - ctx_base)).T
        return symbol.clamp_(min=0).mul_(context.clamp_(min=0))
    if geometry.projector is None:
        raise SettingsError(f"Mode {mode} needs a trained key projector; none is loaded.")
    with torch.no_grad():
        entries = bank.cached(f"proj:{g}", lambda s: geometry.projector(s["key"]))
        scores = geometry.projector(query.key) @ entries.T
    if mode == "context_gate":  # the oracle: only entries of the question's own context
        entry_ctx, index = bank.cached("context_ids", lambda _: _ids([e.context for e in bank.entries]))
        asked = torch.tensor([index.get(c, -1) if c is not None else -1 for c in query.contexts])
        scores = scores.masked_fill(asked.unsqueeze(1) != entry_ctx.unsqueeze(0), float("-inf"))
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
        word_ids, _ = bank.cached("word_ids", lambda _: _ids([e.word for e in bank.entries]))
        picked = torch.zeros(n, d)
        for row in (chosen >= 0).nonzero().flatten().tolist():
            picked[row] = values[word_ids == word_ids[chosen[row]]].mean(0)
    else:
        picked = values[chosen.clamp(min=0)] * (chosen >= 0).unsqueeze(1)
    return Retrieved(scores, chosen, best, picked)
