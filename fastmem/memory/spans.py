"""Slot-free reading: find each entry's word and context, in order, anywhere in what a person typed.

Keys are layer-0 states: the model's token embeddings of the written word and of the written context, in a
few surface forms taken at write time (the case as written, lower case, a capital first letter, title case and
upper case; with and without a leading space; a context also without a leading article). Every key is
standardised with the vocabulary's mean and spread. A question's own layer-0 states are searched for each form:

- a form of n tokens matches at a start position s with score `min_i cos(form_i, question_{s+i})`: every token
  must find its counterpart, in order and side by side, so `zq65x` is not `zq56x` and `the lab north` is not
  `the north lab`;
- the span must stand at word boundaries in the question (no letter or digit glued on either side): `game A` is
  not found in `game A2`, nor `level 4` in `level 45`;
- tokens that are only whitespace are skipped on both sides, so a double space changes nothing;
- the word's span and the context's span may not overlap.

An entry's word match is its best form's best span, and the same for its context. Nothing compares text or
token ids between the question and the entries: the question's tokens are compared as vectors, and the surface
forms are made from the written word alone. Layer 0 is used because it is where siblings stay apart: deeper
states of `level 4` and `level 1`, or of `Monday` and `Wednesday`, move together (see `layer_profile`).
"""
from __future__ import annotations

import unicodedata

import re
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

ARTICLE = re.compile(r"^(the|a|an)\s+(?=\S)", re.IGNORECASE)
MAX_FORM_TOKENS = 16  # a word or context of more tokens is matched on its first 16
SHORTLIST_ABOVE, SHORTLIST_KEEP = 2048, 256  # large memories: exact spans only for the best upper bounds
OVERLAP_FLOOR = 0.5
WORK_PER_CHUNK = 4_000_000  # questions x tokens x forms scored at once (bounded memory, few Python rounds)


def surface_forms(text: str, kind: str) -> list[str]:
    """The written word's (kind 'word') or context's (kind 'context') forms whose keys are stored."""
    base = text.strip()
    cores = [base]
    if kind == "context":
        core = ARTICLE.sub("", base)
        cores = [core] if core else [base]  # `in the game A` holds `game A`; `the north lab` asked as `north lab`
    forms = []
    for core in cores:
        forms += [core, core.lower(), core[:1].upper() + core[1:], core.title(), core.upper()]
    return list(dict.fromkeys(f for f in forms if f))


def form_token_ids(tokenizer, text: str, kind: str) -> list[tuple[int, ...]]:
    """Token ids of every surface form, after a space (mid-sentence) and without one (after a quote, a
    newline or at the start), whitespace-only tokens dropped; distinct sequences only. A form with the
    unknown token is left out (all unknown words share that token's key)."""
    return forms_token_ids(tokenizer, [text], kind)[0]


def forms_token_ids(tokenizer, texts: list[str], kind: str) -> list[list[tuple[int, ...]]]:
    """`form_token_ids` of many texts, tokenized in one batch (a memory of 100,000 words in seconds)."""
    strings, owner = [], []
    for i, text in enumerate(texts):
        for form in surface_forms(text, kind):
            for lead in (" ", ""):
                strings.append(lead + form)
                owner.append(i)
    out: list[list[tuple[int, ...]]] = [[] for _ in texts]
    if not strings:
        return out
    unknown = tokenizer.unk_token_id
    backend = getattr(tokenizer, "backend_tokenizer", None)  # the Rust tokenizer: no per-string Python wrapping
    if backend is not None:
        encodings = backend.encode_batch(strings, add_special_tokens=False)
        rows = [(e.ids, e.offsets) for e in encodings]
    else:
        enc = tokenizer(strings, add_special_tokens=False, return_offsets_mapping=True)
        rows = list(zip(enc["input_ids"], enc["offset_mapping"]))
    for i, string, (ids, offsets) in zip(owner, strings, rows):
        ids = [t for t, (s, e) in zip(ids, offsets) if string[s:e].strip()]
        if ids and unknown not in ids:
            out[i].append(tuple(ids[:MAX_FORM_TOKENS]))
    return [list(dict.fromkeys(forms)) for forms in out]


@dataclass(frozen=True)
class QuestionTokens:
    """What slot-free reading needs of each question, padded to [N, T]: its token ids, where a span may start
    and end (word boundaries), which positions are searched (no whitespace-only or special tokens), and for
    a question whose slots the user marked, where the word and the context may be found."""

    ids: torch.Tensor  # [N, T] long (0 past the end)
    positions: torch.Tensor  # [N, T] long: the token's index in the encoded prompt
    searched: torch.Tensor  # [N, T] bool
    can_start: torch.Tensor  # [N, T] bool: nothing alphanumeric glued before this token
    can_end: torch.Tensor  # [N, T] bool: nothing alphanumeric glued after this token
    word_area: torch.Tensor  # [N, T] bool: where the word may be found (everywhere unless marked)
    context_area: torch.Tensor  # [N, T] bool

    def __len__(self) -> int:
        return self.ids.shape[0]

    def select(self, index) -> "QuestionTokens":
        return QuestionTokens(*(getattr(self, f)[index] for f in self.__dataclass_fields__))

    @staticmethod
    def cat(parts: list["QuestionTokens"]) -> "QuestionTokens":
        width = max(p.ids.shape[1] for p in parts)
        fields = list(QuestionTokens.__dataclass_fields__)
        return QuestionTokens(*(torch.cat([F.pad(getattr(p, f), (0, width - p.ids.shape[1])) for p in parts])
                                for f in fields))


def _glued(ch: str) -> bool:
    """Part of a word: a letter or digit, or a combining mark (an accent or a variation selector after `blicket`
    makes another word, never `blicket` itself)."""
    return ch.isalnum() or unicodedata.category(ch).startswith("M")


def question_tokens(text: str, ids: list[int], offsets: list[tuple[int, int]], marked_word=None,
                    marked_context=None, unknown: int | None = None) -> dict:
    """One question's row of `QuestionTokens` (as lists), from its encoding. `offsets` are character spans in
    `text`; `marked_word` / `marked_context` (token index sets) restrict the search when the user marked them;
    the `unknown` token is never searched."""
    keep = [i for i, (s, e) in enumerate(offsets) if e > s and text[s:e].strip() and ids[i] != unknown]
    row = {"ids": [], "positions": [], "can_start": [], "can_end": [], "word_area": [], "context_area": []}
    for i in keep:
        s, e = offsets[i]
        s += len(text[s:e]) - len(text[s:e].lstrip())
        row["ids"].append(int(ids[i]))
        row["positions"].append(i)
        row["can_start"].append(not (s > 0 and _glued(text[s - 1]) and text[s].isalnum()))
        row["can_end"].append(not (e < len(text) and _glued(text[e]) and _glued(text[e - 1])))
        row["word_area"].append(marked_word is None or i in marked_word)
        row["context_area"].append(marked_context is None or i in marked_context)
    return row


def stack_rows(rows: list[dict]) -> QuestionTokens:
    width = max([len(r["ids"]) for r in rows] + [1])
    if not rows:
        empty = torch.zeros(0, width, dtype=torch.bool)
        return QuestionTokens(empty.long(), empty.long(), empty, empty, empty, empty, empty)

    def pad(key, dtype, fill):
        return torch.tensor([r[key] + [fill] * (width - len(r[key])) for r in rows], dtype=dtype)

    searched = torch.tensor([[True] * len(r["ids"]) + [False] * (width - len(r["ids"])) for r in rows])
    return QuestionTokens(pad("ids", torch.long, 0), pad("positions", torch.long, 0), searched,
                          pad("can_start", torch.bool, False), pad("can_end", torch.bool, False),
                          pad("word_area", torch.bool, False), pad("context_area", torch.bool, False))


@dataclass(frozen=True)
class FormTable:
    """Entry side, derived from the entries' words and contexts: the key of every distinct token in any form,
    and every form as a padded row of indices into those keys."""

    keys: torch.Tensor  # [u, d] unit, standardised layer-0 keys
    forms: torch.Tensor  # [F, L] long indices into keys; -1 past a form's end
    lengths: torch.Tensor  # [F]
    owner: torch.Tensor  # [F] the word (or context) each form belongs to; an owner's forms are consecutive
    n_owners: int

    @cached_property
    def columns(self) -> torch.Tensor:
        """[L, F]: the forms by token position, index `u` (one past the keys) past a form's end; built once per
        table, so a large memory's shortlist bound is one gather with no mask per question."""
        return self.forms.masked_fill(self.forms < 0, len(self.keys)).T.contiguous()

    @cached_property
    def counts(self) -> torch.Tensor:
        """[owners] how many forms each owner has."""
        return torch.bincount(self.owner, minlength=self.n_owners)

    def of_owners(self, owners: torch.Tensor) -> "FormTable":
        """The forms of some owners only, renumbered 0..len(owners)-1 in the given order."""
        counts = self.counts
        starts = counts.cumsum(0) - counts
        c = counts[owners]
        rows = torch.repeat_interleave(starts[owners] - (c.cumsum(0) - c), c) + torch.arange(int(c.sum()))
        return FormTable(self.keys, self.forms[rows], self.lengths[rows],
                         torch.repeat_interleave(torch.arange(len(owners)), c), len(owners))


def form_table(token_forms: list[list[tuple[int, ...]]], embed) -> FormTable:
    """`token_forms[j]`: the forms (token id tuples) of word or context j; `embed(ids) -> [n, d]` unit keys."""
    flat = [f for forms in token_forms for f in forms]
    unique = sorted({t for f in flat for t in f})
    index = {t: i for i, t in enumerate(unique)}
    width = max([len(f) for f in flat] + [1])
    forms = torch.tensor([[index[t] for t in f] + [-1] * (width - len(f)) for f in flat],
                         dtype=torch.long).reshape(len(flat), width)  # one tensor, not one per form
    owner = torch.repeat_interleave(torch.arange(len(token_forms)), torch.tensor([len(f) for f in token_forms],
                                                                                 dtype=torch.long))
    keys = embed(torch.tensor(unique, dtype=torch.long))  # [0, d] when no form has a token
    return FormTable(keys, forms, torch.tensor([len(f) for f in flat], dtype=torch.long), owner, len(token_forms))


@dataclass(frozen=True)
class SpanMatch:
    """Per question and entry: the best span of the word and of the context, and their scores."""

    word: torch.Tensor  # [N, M] match of the word's best form at its best span (-1: not searched)
    context: torch.Tensor  # [N, M]
    word_span: torch.Tensor  # [N, M, 2] first and last token (indices in the encoded prompt), -1 if none
    context_span: torch.Tensor  # [N, M, 2]

    def select(self, row: int) -> "SpanMatch":
        """One question's row: word [M], context [M], spans [M, 2]."""
        return SpanMatch(self.word[row], self.context[row], self.word_span[row], self.context_span[row])

    @property
    def score(self) -> torch.Tensor:
        """The gate: an entry is only as found as the weaker of its word and its context."""
        return torch.minimum(self.word, self.context)

    @property
    def rank(self) -> torch.Tensor:
        """The choice: both matches count (product); the sum breaks ties among entries that share nothing
        with the question (product 0)."""
        return self.word.clamp(min=0) * self.context.clamp(min=0) + 1e-3 * (self.word + self.context)


def _form_scores(sims: torch.Tensor, table: FormTable, can_start, can_end, area) -> tuple[torch.Tensor, torch.Tensor]:
    """sims [N, T, u] -> (score [N, F], start [N, F]) of every form at its best allowed start: the worst of its
    tokens' similarities to the question tokens side by side from that start."""
    n, t, _ = sims.shape
    f, width = table.forms.shape
    masked = sims.masked_fill(~area.unsqueeze(-1), -1.0)  # positions outside the area match nothing
    score = torch.full((n, t, f), 2.0)
    for offset in range(width):  # form token `offset` meets the question token at start + offset
        column = table.forms[:, offset]
        real = column >= 0  # forms this long
        if offset < t:
            here = masked[:, offset:, column.clamp(min=0)].masked_fill(~real, 2.0)  # [N, T - offset, F]
            torch.minimum(score[:, :t - offset], here, out=score[:, :t - offset])
        score[:, max(0, t - offset):].masked_fill_(real, -1.0)  # a form running past the question's end
    last = torch.arange(t).unsqueeze(1) + table.lengths - 1  # [T, F]
    ends = torch.gather(can_end, 1, last.clamp(max=t - 1).reshape(1, -1).expand(n, -1)).reshape(n, t, f)
    ends = ends & (last < t).unsqueeze(0)
    score = score.masked_fill(~(can_start.unsqueeze(-1) & ends), -1.0)
    best, start = score.max(1)  # over starts
    return best, start


def match(question: QuestionTokens, q_keys: torch.Tensor, forms: "EntryForms") -> SpanMatch:
    """Slot-free match of N questions against M entries. `q_keys` [N, T, d]: unit keys of the questions' tokens."""
    n, t = question.ids.shape
    words, contexts, word_of, context_of = forms.words, forms.contexts, forms.word_of, forms.context_of
    m = len(word_of)
    out_w, out_c = torch.full((n, m), -1.0), torch.full((n, m), -1.0)
    span_w, span_c = torch.full((n, m, 2), -1, dtype=torch.long), torch.full((n, m, 2), -1, dtype=torch.long)
    if m == 0 or t == 0:
        return SpanMatch(out_w, out_c, span_w, span_c)
    large = max(words.n_owners, contexts.n_owners) > SHORTLIST_ABOVE
    widest = min(max(len(words.owner), len(contexts.owner)), SHORTLIST_KEEP * 16 if large else 10 ** 12)
    chunk = 1 if large else max(1, min(n, WORK_PER_CHUNK // max(1, t * widest)))
    for lo in range(0, n, chunk):
        part = slice(lo, lo + chunk)
        q, searched = q_keys[part], question.searched[part]
        starts, ends = question.can_start[part] & searched, question.can_end[part] & searched
        word_area, context_area = question.word_area[part] & searched, question.context_area[part] & searched
        by_word = _owners(q @ words.keys.T, words, starts, ends, word_area)
        # a large memory scores only the entries of shortlisted words (one question per chunk); the others keep
        # -1 for word and context (not searched): their gate score is -1 either way
        cols = (by_word[0][0, word_of] > -1).nonzero().squeeze(1) if large else slice(None)
        word_at, context_at = word_of[cols], context_of[cols]
        ws, wstart, wlen = (x[:, word_at] for x in by_word)
        c_sims = q @ contexts.keys.T
        cs, cstart, clen = (x[:, context_at] for x in _owners(c_sims, contexts, starts, ends, context_area))
        # the context's span may not overlap the word's: where it does for an entry whose word and context both
        # half match at least (below, no choice and no explanation depends on it), look again outside the word,
        # once per question and word span
        overlap = (cstart <= wstart + wlen - 1) & (wstart <= cstart + clen - 1) & (ws >= OVERLAP_FLOOR) \
            & (cs >= OVERLAP_FLOOR)
        redo: dict[tuple[int, int, int], list[int]] = {}
        for r, col in zip(*(x.tolist() for x in overlap.nonzero(as_tuple=True))):
            redo.setdefault((r, int(wstart[r, col]), int(wlen[r, col])), []).append(col)
        for (r, first, length), redone in redo.items():
            area = context_area[r].clone()
            area[first:first + length] = False
            got = _owners(c_sims[r:r + 1], contexts, starts[r:r + 1], ends[r:r + 1], area.unsqueeze(0))
            j = context_at[redone]
            cs[r, redone], cstart[r, redone], clen[r, redone] = got[0][0, j], got[1][0, j], got[2][0, j]
        pos = question.positions[part]
        out_w[part, cols], out_c[part, cols] = ws, cs
        span_w[part, cols] = _spans(pos, wstart, wlen, ws)
        span_c[part, cols] = _spans(pos, cstart, clen, cs)
    return SpanMatch(out_w, out_c, span_w, span_c)


def _owners(sims, table: FormTable, starts, ends, area):
    """(score, start, length) [n, owners] of each owner's best form; for a large table, exactly only for the
    SHORTLIST_KEEP owners whose forms could score best (an upper bound that ignores order and word
    boundaries), the rest -1 (`match` then passes them over)."""
    if table.n_owners <= SHORTLIST_ABOVE:
        return _best_per_owner(sims, table, starts, ends, area)
    n = sims.shape[0]
    score = torch.full((n, table.n_owners), -1.0)
    start = torch.zeros(n, table.n_owners, dtype=torch.long)
    length = torch.ones(n, table.n_owners, dtype=torch.long)
    columns = table.columns
    for r in range(n):
        best_at = sims[r].masked_fill(~area[r].unsqueeze(-1), -1.0).max(0).values  # [u] best any position offers
        best_at = torch.cat([best_at, best_at.new_full((1,), 2.0)])  # past a form's end: no limit
        form_bound = best_at.expand(len(columns), -1).gather(1, columns).amin(0)  # [F] its worst token
        bound = torch.full((table.n_owners,), -2.0).scatter_reduce(0, table.owner, form_bound, "amax")
        keep = bound.topk(min(SHORTLIST_KEEP, table.n_owners)).indices
        got = _best_per_owner(sims[r:r + 1], table.of_owners(keep), starts[r:r + 1], ends[r:r + 1], area[r:r + 1])
        score[r, keep], start[r, keep], length[r, keep] = got[0][0], got[1][0], got[2][0]
    return score, start, length


def _best_per_owner(sims, table: FormTable, starts, ends, area):
    """(score, start, length) [n, owners] of each owner's best form."""
    n = sims.shape[0]
    if not len(table.owner):  # no form has a known token: nothing can be found
        zeros = torch.zeros(n, table.n_owners, dtype=torch.long)
        return torch.full((n, table.n_owners), -1.0), zeros, zeros + 1
    score, start = _form_scores(sims, table, starts, ends, area)  # [n, F]
    best = torch.full((n, table.n_owners), -2.0).scatter_reduce(1, table.owner.expand(n, -1), score, "amax")
    is_best = score >= best[:, table.owner]
    # the first form reaching the owner's best: its start and length
    pick = torch.full((n, table.n_owners), len(table.owner), dtype=torch.long)
    cand = torch.where(is_best, torch.arange(len(table.owner)).expand(n, -1), len(table.owner))
    pick = pick.scatter_reduce(1, table.owner.expand(n, -1), cand, "amin")
    pick = pick.clamp(max=len(table.owner) - 1)
    return best.clamp(min=-1.0), torch.gather(start, 1, pick), table.lengths[pick]


def _spans(positions, start, length, score):
    """[n, M, 2] first and last token index (in the encoded prompt) of each span; -1 where none was found."""
    last = (start + length - 1).clamp(max=positions.shape[1] - 1)
    first_pos = torch.gather(positions, 1, start.clamp(max=positions.shape[1] - 1))
    last_pos = torch.gather(positions, 1, last)
    out = torch.stack([first_pos, last_pos], dim=-1)
    return out.masked_fill((score <= -1.0).unsqueeze(-1), -1)


# -- the memory's side ------------------------------------------------------------------------------
@dataclass(frozen=True)
class EntryForms:
    """Form tables of a memory's distinct words and contexts, and which ones each entry has."""

    words: FormTable
    contexts: FormTable
    word_of: torch.Tensor  # [M]
    context_of: torch.Tensor  # [M]


def embedding_keys(lm, geometry, ids: torch.Tensor) -> torch.Tensor:
    """Unit, standardised layer-0 keys [..., d] of token ids: the token embeddings, centred and scaled with the
    vocabulary's mean and spread (so the cosine compares what tells tokens apart)."""
    table = lm.model.get_input_embeddings().weight
    raw = table[ids.to(table.device)].detach().float().cpu()
    return F.normalize((raw - geometry.embed_mean) / geometry.embed_scale, dim=-1)


def entry_forms(lm, bank, geometry) -> EntryForms:
    """The memory's form tables, cached in the memory until it changes."""
    def build(_):
        words = list(dict.fromkeys(e.word for e in bank.entries))
        contexts = list(dict.fromkeys(e.context for e in bank.entries))
        embed = lambda ids: embedding_keys(lm, geometry, ids)  # noqa: E731
        word_at = {w: i for i, w in enumerate(words)}
        context_at = {c: i for i, c in enumerate(contexts)}
        return EntryForms(form_table(forms_token_ids(lm.tokenizer, words, "word"), embed),
                          form_table(forms_token_ids(lm.tokenizer, contexts, "context"), embed),
                          torch.tensor([word_at[e.word] for e in bank.entries], dtype=torch.long),
                          torch.tensor([context_at[e.context] for e in bank.entries], dtype=torch.long))

    return bank.cached(f"span_forms:{lm.name}:{geometry.identity}", build)


def span_match(lm, bank, geometry, question: QuestionTokens) -> SpanMatch:
    """Slot-free match of every question against every entry of the memory."""
    forms = entry_forms(lm, bank, geometry)
    return match(question, embedding_keys(lm, geometry, question.ids), forms)
