"""Retrieval: score memory entries against query keys, pick top-1 per mode, return the value to inject.

Modes (see README):
- none           the plain model
- both_top1      one memory of all contexts, top-1 cosine of projected word keys
- context_gate   oracle: only the bank of the question's context, then top-1 by projected key
- raw_both_top1  top-1 cosine of raw hidden word keys
- average        the mean value of all entries of the top-1 entry's word (conflicts averaged away)
- dual_key       symbol similarity x context similarity, both cosines of raw hidden states taken
                 relative to a context-free baseline (see README for why)
- span_match     the default: slot-free reading (`spans.py`): the written word's and context's tokens (layer 0,
                 in a few surface forms) are searched, in order, anywhere in the question; score = min(word
                 match, context match); the entry chosen has the best product of the two
- token_match    the previous default: every token of the written word and of its context must find a
                 close match among the question's word and context tokens (and vice versa); early-layer
                 token states, standardised; needs the question's slots (a known form or marks)
- codebook       a GRACE-style baseline (`codebook.py`): the last token's state of one canonical question per
                 entry, nearest key within a deferral radius (1 - |q - k| / |k| >= threshold); the same values
- shuffled       a control: span_match's retrieval and settings, but the value injected is the next entry's
                 (values permuted between entries): it shows that the value carries the answer, not any push

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

MODES = ("none", "both_top1", "context_gate", "raw_both_top1", "average", "dual_key", "token_match", "span_match",
         "codebook", "shuffled")
SPAN_MODES = ("span_match", "shuffled")  # slot-free reading (`spans.py`): scored with the model's embeddings
NEEDS_MODEL = ("codebook",) + SPAN_MODES  # scored with the model (keys it computes), in `engine.lookup`
TOKEN_MODES = ("token_match",)  # retrieve by token matching inside the question's slots
CONTROLS = {"shuffled": "span_match"}  # a control mode uses the settings of the mode it controls
NEEDS_PROJECTOR = ("both_top1", "context_gate", "average")
DEFAULT_MODE = "span_match"
QUERY_CHUNK = 64
PRUNE_ABOVE, PRUNE_KEEP = 2048, 256  # above 2,048 entries, exact word matching runs on a 256-entry shortlist  # token matching scores this many questions at a time (bounded memory at 100k entries)


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
        return cls(states.word_at(bank.key_layer), states.word_at(bank.symbol_layer),
                   states.context_at(bank.context_layer), tuple(contexts), *tokens)


@dataclass(frozen=True)
class Retrieved:
    scores: torch.Tensor  # [N, M]; -inf where the gate excludes an entry
    chosen: torch.Tensor  # [N] entry index, -1 where nothing is injected
    best: torch.Tensor  # [N] best score (-inf for an empty memory)
    values: torch.Tensor  # [N, d] value to inject (zeros where nothing is)
    source: torch.Tensor | None = None  # [N] the entry whose values are injected, when not `chosen` (shuffled)
    spans: "SpanMatch | None" = None  # slot-free reading: where each entry's word and context were found

    @property
    def injected(self) -> torch.Tensor:
        return self.chosen if self.source is None else self.source


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
    if mode in NEEDS_MODEL:
        raise SettingsError(f"Mode {mode} is scored with the model: call engine.lookup.")
    if mode == "raw_both_top1":
        return _unit(query.key) @ bank.cached("raw", lambda s: _unit(s["key"])).T
    g = geometry.identity
    if mode in TOKEN_MODES:
        word, context = token_match_parts(query, bank, geometry)
        return torch.minimum(word, context)
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


def passes(best: torch.Tensor, threshold: float | None) -> torch.Tensor:
    """The one threshold gate (retrieval, calibration sweeps, curves): a score at least the threshold; with the
    threshold off, a score above 0, so a question that matches nothing never gets an entry."""
    return torch.isfinite(best) & (best > 0 if threshold is None else best >= threshold)


def retrieve(mode: str, query: QueryKeys, bank: MemoryBank, geometry: KeyGeometry,
             threshold: float | None = None, scores: torch.Tensor | None = None, spans=None,
             gate: bool = True) -> Retrieved:
    """Top-1 entry per question and the value to inject. `scores` [N, M]: similarities computed outside
    (mode codebook, `engine.lookup`), else scored here; `spans` (slot-free reading, `spans.SpanMatch`).
    `gate=False` keeps every top-1 with a finite score (a sweep applies `passes` per threshold itself)."""
    threshold = check_threshold(threshold)
    rank = None
    if spans is not None:  # rank by both matches (product), gate by the weaker
        scores, rank = spans.score.clone(), spans.rank
    if scores is None and mode in NEEDS_MODEL:
        raise SettingsError(f"Mode {mode} is scored with the model: call engine.lookup.")
    if scores is None and mode in TOKEN_MODES and len(bank):  # rank by both matches (product), gate by the weaker
        word, context = token_match_parts(query, bank, geometry)
        scores, rank = torch.minimum(word, context), word.clamp(min=0) * context.clamp(min=0)
    elif scores is None:
        scores = score_entries(mode, query, bank, geometry)
    n, d = query.key.shape[0], bank.hidden_size
    if scores.shape[1] == 0:
        return Retrieved(scores, torch.full((n,), -1), torch.full((n,), float("-inf")), torch.zeros(n, d))
    enabled = bank.stacked()["enabled"].unsqueeze(0)
    scores = scores.masked_fill(~enabled, float("-inf"))  # switched-off entries
    if rank is None:
        best, chosen = scores.max(dim=1)
    else:
        chosen = rank.masked_fill(~enabled, -1.0).argmax(dim=1)
        best = scores.gather(1, chosen.unsqueeze(1)).squeeze(1)
    chosen = chosen.masked_fill(~(passes(best, threshold) if gate else torch.isfinite(best)), -1)
    values = bank.stacked()["value"]
    if mode == "average":  # mean of every value bound to the retrieved entry's word
        word_ids, _ = bank.cached("word_ids", lambda _: _ids([e.word for e in bank.entries]))
        picked = torch.zeros(n, d)
        for row in (chosen >= 0).nonzero().flatten().tolist():
            picked[row] = values[word_ids == word_ids[chosen[row]]].mean(0)
    elif mode == "shuffled":  # each entry's value goes to the next entry: a fixed derangement
        source = shuffled_source(chosen, len(bank))
        picked = values[source.clamp(min=0)] * (source >= 0).unsqueeze(1)
        return Retrieved(scores, chosen, best, picked, source, spans)
    else:
        picked = values[chosen.clamp(min=0)] * (chosen >= 0).unsqueeze(1)
    return Retrieved(scores, chosen, best, picked, None, spans)


def shuffled_source(chosen: torch.Tensor, n_entries: int) -> torch.Tensor:
    """The shuffled control's derangement: each entry's values go to the next entry (-1 stays -1)."""
    return ((chosen + 1) % max(1, n_entries)).masked_fill(chosen < 0, -1)


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


def token_match_parts(query: QueryKeys, bank: MemoryBank, geometry: KeyGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """(word match, context match), each [N, M]."""
    if bank.token_layer < 0:
        raise SettingsError("This memory has no token keys (a version-1 file): re-key it with Lab.import_memory.")
    if query.word_tokens is None or query.context_tokens is None:
        raise SettingsError("Mode token_match needs the question's token states at the memory's token layer.")
    g, m = geometry.identity, len(bank)
    words = (bank.cached(f"word_tokens:{g}", lambda s: geometry.standardise(s["word_tokens"])),
             bank.stacked()["word_tokens_owner"])
    contexts, context_of = bank.cached(f"unique_contexts:{g}", lambda s: _unique_contexts(bank, geometry))
    word_parts, context_parts = [], []
    n_contexts = len(context_of) and int(context_of.max()) + 1
    for start in range(0, query.key.shape[0], QUERY_CHUNK):
        part = slice(start, start + QUERY_CHUNK)
        q_words, q_mask = geometry.standardise(query.word_tokens[0][part]), query.word_tokens[1][part]
        if m > PRUNE_ABOVE:
            word_parts.append(_pruned_word_match(q_words, q_mask, bank, geometry, words))
        else:
            word_parts.append(match_tokens(q_words, q_mask, *words, m))
        context_parts.append(match_tokens(geometry.standardise(query.context_tokens[0][part]),
                                          query.context_tokens[1][part], *contexts, n_contexts)[:, context_of])
    if not word_parts:
        return torch.zeros(0, m), torch.zeros(0, m)
    return torch.cat(word_parts), torch.cat(context_parts)


def _pruned_word_match(q_words: torch.Tensor, q_mask: torch.Tensor, bank: MemoryBank, geometry: KeyGeometry,
                       words: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Word match for a large memory: a shortlist of the PRUNE_KEEP entries whose mean word-token direction is
    closest, then the exact token match on those only; entries left out score -1 (the floor of the match)."""
    flat, owner = words
    m = len(bank)
    summary = bank.cached(f"word_summary:{geometry.identity}", lambda s: _unit(
        torch.zeros(m, flat.shape[1]).index_add_(0, owner, flat)))
    counts = bank.cached("word_token_counts", lambda s: torch.bincount(owner, minlength=m))
    starts = counts.cumsum(0) - counts
    q_summary = _unit((q_words * q_mask.unsqueeze(-1)).sum(1))
    shortlist = (q_summary @ summary.T).topk(min(PRUNE_KEEP, m), dim=1).indices  # [N, K]
    out = torch.full((q_words.shape[0], m), -1.0)
    for row, picked in enumerate(shortlist):
        c = counts[picked]
        rows = torch.repeat_interleave(starts[picked] - (c.cumsum(0) - c), c) + torch.arange(int(c.sum()))
        local = torch.repeat_interleave(torch.arange(len(picked)), c)
        out[row, picked] = match_tokens(q_words[row:row + 1], q_mask[row:row + 1], flat[rows], local, len(picked))[0]
    return out


def _unique_contexts(bank: MemoryBank, geometry: KeyGeometry):
    """Context token keys scored once per distinct context state: every entry written in the same context
    with the same statement has the very same context states (they precede the word in a causal model)."""
    index: dict[bytes, int] = {}
    context_of, rows, owner = [], [], []
    for e in bank.entries:
        key = e.context_tokens.numpy().tobytes()
        if key not in index:
            index[key] = len(index)
            rows.append(e.context_tokens)
            owner += [index[key]] * len(e.context_tokens)
        context_of.append(index[key])
    flat = torch.cat(rows) if rows else torch.zeros(0, bank.hidden_size)
    return (geometry.standardise(flat), torch.tensor(owner, dtype=torch.long)), torch.tensor(context_of, dtype=torch.long)
