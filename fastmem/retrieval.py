"""Retrieval: score memory entries against query keys, pick top-1 per mode, return the value to inject.

Modes (see README):
- none           the plain model
- both_top1      one memory of all contexts, top-1 cosine of projected word keys
- context_gate   oracle: only the bank of the question's context, then top-1 by projected key
- raw_both_top1  top-1 cosine of raw hidden word keys
- average        the mean value of all entries of the top-1 entry's word (conflicts averaged away)
- dual_key       symbol similarity x context similarity, both cosines of raw hidden states taken
                 relative to a context-free baseline (see README for why)
- token_match    the selective default: every token of the written word and of its context must find a
                 close match among the question's word and context tokens (and vice versa); early-layer
                 token states, standardised; score = min(word match, context match)

With the threshold off, an entry is injected only when its score is above 0: a question that matches
nothing never gets the first entry's value by default.
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

MODES = ("none", "both_top1", "context_gate", "raw_both_top1", "average", "dual_key", "token_match")
NEEDS_PROJECTOR = ("both_top1", "context_gate", "average")
DEFAULT_MODE = "token_match"
TIE_BREAK = 1e-3
QUERY_CHUNK = 64  # token matching scores this many questions at a time (bounded memory at 100k entries)


@dataclass(frozen=True)
class KeyGeometry:
    """What retrieval needs besides the memory, fitted on the training split only."""

    projector: KeyProjector | None
    symbol_baseline: torch.Tensor  # [d] mean symbol key of context-free training prompts
    context_baseline: torch.Tensor  # [d] mean context key of context-free training prompts
    token_mean: torch.Tensor | None = None  # [d] token states of training prompts at the token layer: mean
    token_scale: torch.Tensor | None = None  # [d] ... and spread; keys are standardised before the cosine

    @cached_property
    def identity(self) -> str:
        """Names derived entry tensors cached in a memory (projected keys depend on the geometry)."""
        parts = [self.symbol_baseline, self.context_baseline] + [
            t for t in (self.token_mean, self.token_scale) if t is not None]
        digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in parts))
        return f"{self.projector.identity if self.projector else 'none'}-{digest.hexdigest()[:12]}"

    def standardise(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token states [..., d] -> unit vectors of their standardised values (cosines then compare what
        differs between tokens, not the directions every early-layer state shares)."""
        if self.token_mean is None or self.token_scale is None:
            raise SettingsError("Mode token_match needs token statistics from calibration; none are loaded.")
        return _unit((tokens.float() - self.token_mean) / self.token_scale)


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
        return cls(states.word[:, bank.key_layer], states.word[:, bank.symbol_layer],
                   states.context[:, bank.context_layer], tuple(contexts), *tokens)


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
    if mode == "token_match":
        return _token_match_scores(query, bank, geometry)
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
    scores = scores.masked_fill(~bank.stacked()["enabled"].unsqueeze(0), float("-inf"))  # switched-off entries
    best, chosen = scores.max(dim=1)
    # Threshold off = top-1 among positive scores: a score of 0 (or less) never injects.
    off = (best <= 0) | torch.isinf(best) if threshold is None else (best < threshold) | torch.isinf(best)
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


def match_tokens(query: torch.Tensor, query_mask: torch.Tensor, flat: torch.Tensor, owner: torch.Tensor,
                 n_entries: int) -> torch.Tensor:
    """Symmetric soft match of token sets: [N, T, d] unit query tokens vs [S, d] unit entry tokens owned by
    `n_entries` entries -> [N, M]. Every entry token must find a close query token and every query token
    a close entry token; the score is the worst of those best matches (min over tokens of max cosine)."""
    n, t = query_mask.shape
    sims = (query.reshape(n * t, -1) @ flat.T).reshape(n, t, -1)  # [N, T, S]
    sims = sims.masked_fill(~query_mask.unsqueeze(-1), -2.0)
    index = owner.expand(n, -1)
    entry_side = torch.full((n, n_entries), 2.0).scatter_reduce(1, index, sims.max(1).values, "amin")
    per_query = torch.full((n, t, n_entries), -2.0).scatter_reduce(2, owner.expand(n, t, -1), sims, "amax")
    query_side = per_query.masked_fill(~query_mask.unsqueeze(-1), 2.0).min(1).values
    return torch.minimum(entry_side, query_side)


def _token_match_scores(query: QueryKeys, bank: MemoryBank, geometry: KeyGeometry) -> torch.Tensor:
    if bank.token_layer < 0:
        raise SettingsError("This memory has no token keys (a version-1 file): re-key it with Lab.import_memory.")
    if query.word_tokens is None or query.context_tokens is None:
        raise SettingsError("Mode token_match needs the question's token states at the memory's token layer.")
    g, m = geometry.identity, len(bank)
    entries = {f: (bank.cached(f"{f}:{g}", lambda s, f=f: geometry.standardise(s[f])), bank.stacked()[f + "_owner"])
               for f in ("word_tokens", "context_tokens")}
    out = []
    for start in range(0, query.key.shape[0], QUERY_CHUNK):
        part = slice(start, start + QUERY_CHUNK)
        word, context = (match_tokens(geometry.standardise(states[part]), mask[part], *entries[f], m)
                         for f, (states, mask) in (("word_tokens", query.word_tokens),
                                                   ("context_tokens", query.context_tokens)))
        # The weaker of the two matches; when the word is the weaker for both contexts of a word, the
        # tiny context term still ranks the asked context first (it never moves a score by more than 0.001).
        out.append(torch.minimum(word, context) + TIE_BREAK * context)
    return torch.cat(out) if out else torch.zeros(0, m)
