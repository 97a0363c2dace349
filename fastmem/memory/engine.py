"""Write bindings into a memory and read answers out of it: the two operations of the mechanism.

Both work on `PromptStates` from one batched forward pass, so the benchmark can reuse the same states
for every mode, alpha and threshold.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from fastmem.errors import SettingsError
from fastmem.model.lm import FrozenLM, PromptStates
from fastmem.memory.bank import TOKEN_KEYS, MemoryBank, MemoryEntry
from fastmem.memory.prompts import SlottedPrompt
from fastmem.memory.modes import Query, get_mode
from fastmem.memory.retrieval import KeyGeometry, QueryKeys, Retrieved, as_number, check_threshold, passes
from fastmem.model.decode import answer_states, next_tokens
from fastmem.memory.values import correction_vector

MAX_ALPHA = 1000.0


def check_alpha(alpha: float) -> float:
    a = as_number(alpha, "Alpha")
    if not math.isfinite(a) or not 0.0 <= a <= MAX_ALPHA:
        raise SettingsError(f"Alpha {alpha!r} must be a finite number from 0 to {MAX_ALPHA:g}.")
    return a


def head_bias(lm: FrozenLM) -> torch.Tensor | None:
    bias = getattr(lm.model.get_output_embeddings(), "bias", None)
    return None if bias is None else bias.detach().float().cpu()


def prompt_states(lm: FrozenLM, bank: MemoryBank, prompts: list[SlottedPrompt], progress=None) -> PromptStates:
    """The one way to run prompts for a memory: dense keys at the memory's layers only (10,000 statements at
    every layer would be 2 GB for SmolLM2) plus token keys at its token layer."""
    layers = (bank.token_layer,) if bank.token_layer >= 0 else ()
    return lm.states(prompts, progress=progress, token_layers=layers,
                     keep=(bank.key_layer, bank.context_layer, bank.symbol_layer))


def make_entries(lm: FrozenLM, bank: MemoryBank, states: PromptStates, words, contexts, labels,
                 prompts: list[SlottedPrompt], value_steps: int | None = None) -> list[MemoryEntry]:
    """Entries from the states of write prompts (the label follows each prompt). A label of n tokens gets
    n corrections, each from the state before that token with the label teacher-forced (refined with the
    answer state as an anchor, `values.correction_vector`). `value_steps` overrides the memory's own."""
    label_ids = [lm.label_tokens(label) for label in labels]
    finals = [states.final[i:i + 1] for i in range(len(labels))]
    multi = [i for i, ids in enumerate(label_ids) if len(ids) > 1]
    if multi:  # one more forward pass, only for the multi-token labels
        rows = [lm.encode(prompts[i]).ids + list(label_ids[i][:-1]) for i in multi]
        for i, got in zip(multi, answer_states(lm, rows, [len(label_ids[i]) for i in multi])):
            finals[i] = got
    answer_state = torch.cat([f[:1].expand(len(f), -1) for f in finals])  # each token's anchor (values.py)
    flat = correction_vector(torch.cat(finals), torch.tensor([t for ids in label_ids for t in ids]),
                             lm.unembedding.detach().float().cpu(), steps=value_steps or bank.value_steps, bias=head_bias(lm),
                             anchor=answer_state)
    values = flat.split([len(ids) for ids in label_ids])
    keys = _keys(bank, states)
    return [MemoryEntry(w, c, label.strip(), ids[0], p.text, p.word_span, p.context_span, values[i][0].clone(),
                        tuple(ids[1:]), values[i][1:].clone() if len(ids) > 1 else None,
                        **{f: v[i] for f, v in keys.items()})
            for i, (w, c, label, ids, p) in enumerate(zip(words, contexts, labels, label_ids, prompts))]


def _keys(bank: MemoryBank, states: PromptStates) -> dict[str, list[torch.Tensor]]:
    """Every key an entry keeps, from its write statement's states, at the memory's layers."""
    n = len(states)
    keys = {"key": states.word_at(bank.key_layer), "context_key": states.context_at(bank.context_layer),
            "symbol_key": states.word_at(bank.symbol_layer)}
    out = {f: [t[i].clone() for i in range(n)] for f, t in keys.items()}
    if bank.token_layer >= 0:
        for f, ts in (("word_tokens", states.word_tokens), ("context_tokens", states.context_tokens)):
            t, m = ts.at(bank.token_layer)
            out[f] = [t[i][m[i]].clone() for i in range(n)]
    return out


def ensure_keys(lm: FrozenLM, bank: MemoryBank, fields, progress=None) -> MemoryBank:
    """A read-only view of one version of the memory whose entries all carry these keys. A memory loaded from a
    file stores none: they are read again from the statements of a snapshot (one batched forward pass, at the
    memory's layers), attached to that snapshot, and handed to the memory itself by entry identity, so an entry
    removed or written meanwhile never receives another entry's keys (`MemoryBank.adopt`)."""
    fields = tuple(fields)
    view = bank.snapshot()
    if not fields or all(f in view.stacked() for f in fields):
        return view
    if view.token_layer < 0 and set(fields) & set(TOKEN_KEYS):
        raise SettingsError("This memory has no token layer: open it with Lab.import_memory.")
    prompts = [SlottedPrompt(e.write_text, e.word_span, e.context_span, e.context) for e in view.entries]
    keys = _keys(view, prompt_states(lm, view, prompts, progress=progress))
    keyed = view.with_keys({f: keys[f] for f in fields})
    bank.adopt(view.entries, keyed.entries)
    return keyed


def write_entries(lm: FrozenLM, bank: MemoryBank, prompts: list[SlottedPrompt], words, contexts, labels,
                  value_steps: int | None = None, on_duplicate: str = "replace", states: PromptStates | None = None,
                  progress=None) -> list[str]:
    """The one way bindings enter a memory (`Lab.write`, the benchmark, calibration): one batched forward pass
    over the write prompts (or their `states`, already run), the entries made from it, and each added;
    returns each row's status (added, replaced, kept)."""
    if states is None:
        states = prompt_states(lm, bank, list(prompts), progress=progress)
    entries = make_entries(lm, bank, states, list(words), list(contexts), list(labels), list(prompts), value_steps)
    return [bank.add(entry, on_duplicate) for entry in entries]


@dataclass(frozen=True)
class Answer:
    base_logits: torch.Tensor  # [N, V] plain model
    retrieved: Retrieved
    base_ids: torch.Tensor  # [N] the plain model's next token
    ids: torch.Tensor  # [N] the next token with memory
    injection: "Injection"  # which rows got which alpha * W_U v

    @functools.cached_property
    def logits(self) -> torch.Tensor:
        """[N, V] with alpha * value added after the final norm (built on demand: a benchmark reads only `ids`)."""
        return self.injection.logits(self.base_logits)


@dataclass(frozen=True)
class Injection:
    """The read rule in logit space, W_U (h + alpha v) = W_U h + alpha W_U v, on `rows` [R]: row k gets
    `deltas[which[k]]` ([K, V], each injected value's W_U v, computed once however many rows share it)."""

    rows: torch.Tensor
    deltas: torch.Tensor
    which: torch.Tensor
    alpha: float

    @classmethod
    def none(cls, vocab: int) -> "Injection":
        empty = torch.zeros(0, dtype=torch.long)
        return cls(empty, torch.zeros(0, vocab), empty, 0.0)

    def pairs(self) -> list[tuple[int, int]]:
        return list(zip(self.rows.tolist(), self.which.tolist()))

    def row(self, base_logits: torch.Tensor, row: int, delta: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """One injected row's logits [V]: the one place the rule is computed."""
        return torch.add(base_logits[row], self.deltas[delta], alpha=self.alpha, out=out)

    def ids(self, base_logits: torch.Tensor, base_ids: torch.Tensor) -> torch.Tensor:
        """The next token [N] with memory: the plain one where nothing is injected. Row by row into one buffer,
        never the [R, V] logits of every injected row at once (the benchmark asks this of thousands of rows)."""
        ids, buf = base_ids.clone(), torch.empty(base_logits.shape[1])
        for row, delta in self.pairs():
            ids[row] = next_tokens(self.row(base_logits, row, delta, out=buf))
        return ids

    def logits(self, base_logits: torch.Tensor) -> torch.Tensor:
        out = base_logits.clone()
        for row, delta in self.pairs():
            out[row] = self.row(base_logits, row, delta)
        return out


def answer(lm: FrozenLM, bank: MemoryBank, geometry: KeyGeometry, states: PromptStates, contexts, mode: str,
           alpha: float, threshold: float | None, base_logits: torch.Tensor | None = None,
           base_ids: torch.Tensor | None = None) -> Answer:
    """Retrieve for each prompt and inject (`Injection`). `base_logits` and their argmax `base_ids` (the plain
    model's, from an earlier call) save recomputing them for every mode; only the rows that retrieved something
    are read again.
    """
    alpha = check_alpha(alpha)
    got = lookup(lm, mode, states, bank, geometry, contexts, threshold)
    base = lm.logits(states.final) if base_logits is None else base_logits
    base_ids = next_tokens(base) if base_ids is None else base_ids
    rows = (got.chosen >= 0).nonzero().squeeze(1)
    if alpha == 0.0 or not len(rows):
        return Answer(base, got, base_ids, base_ids, Injection.none(base.shape[1]))
    injection = Injection(rows, *value_logits(lm, bank, get_mode(mode), got, rows), alpha)
    return Answer(base, got, base_ids, injection.ids(base, base_ids), injection)


ENTRY_LOGITS_MAX = 1024  # entries whose W_U v a memory keeps ([M, V] floats: 200 MB at 1,024 for 49k tokens)


def value_logits(lm: FrozenLM, bank: MemoryBank, mode, got: Retrieved,
                 rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(W_U v [K, V] of the values injected at `rows`, which of them each row gets [R]). A mode that injects one
    entry's own value looks it up in every entry's W_U v, computed once per version of a small memory when many
    rows ask at once (the benchmark scores every mode and probe set against one memory); otherwise each distinct
    value is multiplied once (a mix: the average of a word's values)."""
    unembedding = lm.unembedding.detach().float().cpu()
    key = f"value_logits:{lm.name}"
    small = len(bank) <= ENTRY_LOGITS_MAX and (4 * len(rows) >= len(bank) or key in bank.stacked())
    if not (mode.injects_entry_value and small):
        distinct, which = torch.unique(got.values[rows], dim=0, return_inverse=True)
        return distinct @ unembedding.T, which
    return bank.cached(key, lambda stacked: stacked["value"] @ unembedding.T), got.injected[rows]  # [M, V]


def lookup(lm: FrozenLM, mode, states: PromptStates, bank: MemoryBank, geometry: KeyGeometry, contexts,
           threshold: float | None, gate: bool = True) -> Retrieved:
    """Retrieval for any mode, from the questions' states (some modes score with the model: the codebook's entry
    keys are forward passes, slot-free reading compares token embeddings)."""
    mode = get_mode(mode)
    if mode.keys and not all(f in bank.stacked() for f in mode.keys):
        raise SettingsError(f"Mode {mode.name} needs keys this memory's entries lack (a memory from a file): "
                            "read them with engine.ensure_keys (Lab.ask does).")
    query = Query(QueryKeys.from_states(states, bank, contexts), bank, geometry, lm, states)
    return retrieve(mode, query, threshold, gate)


def retrieve(mode, query: Query, threshold: float | None = None, gate: bool = True) -> Retrieved:
    """Top-1 entry per question by the mode's ranking, gated by `retrieval.passes` on its score, and the value
    the mode injects. `gate=False` keeps every top-1 with a finite score (a sweep gates per threshold itself)."""
    mode, threshold = get_mode(mode), check_threshold(threshold)
    bank = query.bank
    scored = mode.score(query)
    n, d = query.keys.key.shape[0], bank.hidden_size
    if scored.scores.shape[1] == 0:
        return Retrieved(scored.scores, torch.full((n,), -1), torch.full((n,), float("-inf")), torch.zeros(n, d),
                         spans=scored.spans)
    enabled = bank.stacked()["enabled"].unsqueeze(0)
    scores = scored.scores.masked_fill(~enabled, float("-inf"))  # switched-off entries
    if scored.rank is None:
        best, chosen = scores.max(dim=1)
    else:
        chosen = scored.rank.masked_fill(~enabled, float("-inf")).argmax(dim=1)
        best = scores.gather(1, chosen.unsqueeze(1)).squeeze(1)
    chosen = chosen.masked_fill(~(passes(best, threshold) if gate else torch.isfinite(best)), -1)
    values, source = mode.inject(bank, chosen)
    return Retrieved(scores, chosen, best, values, source, scored.spans)
