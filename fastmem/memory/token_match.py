"""token_match (the default before slot-free reading): the soft match of two token sets at an early layer.

Every token of the written word (and context) must find a close token among the question's word (context) tokens,
and every question token a close written one; the score is the worst of those best cosines. The question's slots
say which of its tokens are the word and the context.
"""
from __future__ import annotations

import torch

from fastmem.errors import SettingsError
from fastmem.memory.bank import MemoryBank
from fastmem.memory.retrieval import KeyGeometry, QueryKeys, unit

QUERY_CHUNK = 64  # questions scored at a time (bounded memory at 100,000 entries)
PRUNE_ABOVE, PRUNE_KEEP = 2048, 256  # above 2,048 entries, exact word matching runs on a 256-entry shortlist


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
    summary = bank.cached(f"word_summary:{geometry.identity}", lambda s: unit(
        torch.zeros(m, flat.shape[1]).index_add_(0, owner, flat)))
    counts = bank.cached("word_token_counts", lambda s: torch.bincount(owner, minlength=m))
    starts = counts.cumsum(0) - counts
    q_summary = unit((q_words * q_mask.unsqueeze(-1)).sum(1))
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
