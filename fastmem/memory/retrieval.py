"""What retrieval works with: the key geometry fitted in calibration, a question's keys, what was retrieved, and the
one threshold gate. How each mode scores and chooses lives in `fastmem.memory.modes`.

With the threshold off, an entry is injected only when its score is above 0: a question that matches nothing
never gets the first entry's value by default.
"""
from __future__ import annotations

import hashlib
import numbers
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from fastmem.errors import SettingsError
from fastmem.model.lm import PromptStates
from fastmem.memory.bank import MemoryBank
from fastmem.memory.projector import KeyProjector


@dataclass(frozen=True)
class KeyGeometry:
    """What retrieval needs besides the memory, fitted on the training split only."""

    projector: KeyProjector | None
    symbol_baseline: torch.Tensor  # [d] mean symbol key of context-free training prompts
    context_baseline: torch.Tensor  # [d] mean context key of context-free training prompts
    token_mean: torch.Tensor | None = None  # [d] token states of training prompts at the token layer: mean
    token_scale: torch.Tensor | None = None  # [d] ... and spread; keys are standardised before the cosine
    embed_mean: torch.Tensor | None = None  # [d] the vocabulary's token embeddings: mean (slot-free reading)
    embed_scale: torch.Tensor | None = None  # [d] ... and spread

    @cached_property
    def identity(self) -> str:
        """Names derived entry tensors cached in a memory (projected keys depend on the geometry)."""
        parts = [self.symbol_baseline, self.context_baseline] + [
            t for t in (self.token_mean, self.token_scale, self.embed_mean, self.embed_scale) if t is not None]
        digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in parts))
        return f"{self.projector.identity if self.projector else 'none'}-{digest.hexdigest()[:12]}"

    def standardise(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token states [..., d] -> unit vectors of their standardised values (cosines then compare what
        differs between tokens, not the directions every early-layer state shares)."""
        if self.token_mean is None or self.token_scale is None:
            raise SettingsError("Mode token_match needs token statistics from calibration; none are loaded.")
        return unit((tokens.float() - self.token_mean) / self.token_scale)


@dataclass(frozen=True)
class QueryKeys:
    key: torch.Tensor  # [N, d] word key at the key layer
    symbol: torch.Tensor  # [N, d] word key at the symbol layer
    context: torch.Tensor  # [N, d] context key at the context layer
    contexts: tuple[str | None, ...]  # context names, used only by the oracle gate
    word_tokens: tuple[torch.Tensor, torch.Tensor] | None = None  # ([N, T, d], mask [N, T]) at the token layer
    context_tokens: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def from_states(cls, states: PromptStates, bank: MemoryBank, contexts) -> "QueryKeys":
        tokens = [None, None]
        if bank.token_layer >= 0 and states.word_tokens is not None and states.context_tokens is not None \
                and bank.token_layer in states.word_tokens.layers:
            tokens = [states.word_tokens.at(bank.token_layer), states.context_tokens.at(bank.token_layer)]
        return cls(states.word_at(bank.key_layer), states.word_at(bank.symbol_layer),
                   states.context_at(bank.context_layer), tuple(contexts), *tokens)


@dataclass(frozen=True)
class Retrieved:
    scores: torch.Tensor  # [N, M]; -inf where the gate excludes an entry
    chosen: torch.Tensor  # [N] entry index, -1 where nothing is injected
    best: torch.Tensor  # [N] best score (-inf for an empty memory)
    values: torch.Tensor  # [N, d] value to inject (zeros where nothing is)
    source: torch.Tensor | None = None  # [N] the entry whose values are injected, when not `chosen` (shuffled)
    spans: object = None  # slot-free reading: where each entry's word and context were found (`spans.SpanMatch`)

    @property
    def injected(self) -> torch.Tensor:
        return self.chosen if self.source is None else self.source


def as_number(value, name: str) -> float:
    """A real number as float; text, booleans and anything else are a SettingsError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SettingsError(f"{name} {str(value)[:40]!r} is not a number.")
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float
        raise SettingsError(f"{name} {str(value)[:20]}… is too large.") from None


def check_threshold(threshold: float | None) -> float | None:
    if threshold is None:
        return None
    t = as_number(threshold, "Threshold")
    if not (-1.0 <= t <= 1.0):  # also rejects NaN
        raise SettingsError(f"Threshold {threshold!r} must be a cosine in [-1, 1] (or off).")
    return t


def unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def passes(best: torch.Tensor, threshold: float | None) -> torch.Tensor:
    """The one threshold gate (retrieval, calibration sweeps, curves): a score at least the threshold; with the
    threshold off, a score above 0, so a question that matches nothing never gets an entry."""
    return torch.isfinite(best) & (best > 0 if threshold is None else best >= threshold)
