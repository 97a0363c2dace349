"""Write bindings into a memory and read answers out of it: the two operations of the mechanism.

Both work on `PromptStates` from one batched forward pass, so the benchmark can reuse the same states
for every mode, alpha and threshold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import SettingsError
from .lm import FrozenLM, PromptStates
from .memory import MemoryBank, MemoryEntry
from .prompts import SlottedPrompt
from .retrieval import SPAN_MODES, KeyGeometry, QueryKeys, Retrieved, as_number, retrieve
from .spans import span_match
from .codebook import CODEBOOK, codebook_scores
from .decode import answer_states
from .values import correction_vector

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
    """The one way to run prompts for a memory: dense keys plus token keys at the memory's token layer."""
    layers = (bank.token_layer,) if bank.token_layer >= 0 else ()
    return lm.states(prompts, progress=progress, token_layers=layers)


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
    tokens = [[None] * len(words)] * 2
    if bank.token_layer >= 0:
        tokens = [[t[i][m[i]].clone() for i in range(len(words))]
                  for t, m in (ts.at(bank.token_layer) for ts in (states.word_tokens, states.context_tokens))]
    return [MemoryEntry(w, c, label.strip(), ids[0], p.text, p.word_span, p.context_span,
                        states.word_at(bank.key_layer)[i].clone(),
                        states.context_at(bank.context_layer)[i].clone(), states.word_at(bank.symbol_layer)[i].clone(),
                        values[i][0].clone(), tokens[0][i], tokens[1][i], tuple(ids[1:]),
                        values[i][1:].clone() if len(ids) > 1 else None)
            for i, (w, c, label, ids, p) in enumerate(zip(words, contexts, labels, label_ids, prompts))]


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
    logits: torch.Tensor  # [N, V] with alpha * value added after the final norm
    retrieved: Retrieved

    @property
    def base_ids(self) -> torch.Tensor:
        return self.base_logits.argmax(-1)

    @property
    def ids(self) -> torch.Tensor:
        return self.logits.argmax(-1)


def answer(lm: FrozenLM, bank: MemoryBank, geometry: KeyGeometry, states: PromptStates, contexts, mode: str,
           alpha: float, threshold: float | None, base_logits: torch.Tensor | None = None) -> Answer:
    """Retrieve for each prompt and inject: logits = W_U (h + alpha v) = logits(h) + alpha W_U v.

    `base_logits` (the plain model's, from an earlier call) saves recomputing them for every mode.
    """
    alpha = check_alpha(alpha)
    got = lookup(lm, mode, states, bank, geometry, contexts, threshold)
    base = lm.logits(states.final) if base_logits is None else base_logits
    on = got.chosen >= 0
    delta = torch.zeros_like(base)
    if on.any() and alpha != 0.0:  # only rows that retrieved something change
        delta[on] = got.values[on] @ lm.unembedding.detach().float().cpu().T
    return Answer(base, inject(base, delta, on, alpha), got)


def lookup(lm: FrozenLM, mode: str, states: PromptStates, bank: MemoryBank, geometry: KeyGeometry, contexts,
           threshold: float | None, gate: bool = True) -> Retrieved:
    """Retrieval for any mode: the codebook's scores need the model (its entry keys are forward passes)."""
    query = QueryKeys.from_states(states, bank, contexts)
    scores = codebook_scores(lm, bank, states) if mode == CODEBOOK and len(bank) else None
    spans = None
    if mode in SPAN_MODES:
        if states.question is None:
            raise SettingsError(f"Mode {mode} needs the questions' tokens (FrozenLM.states).")
        spans = span_match(lm, bank, geometry, states.question)
        scores = spans.score
    return retrieve(mode, query, bank, geometry, threshold, scores, spans, gate)


def inject(base_logits: torch.Tensor, delta_logits: torch.Tensor, on: torch.Tensor, alpha: float) -> torch.Tensor:
    """The read rule in logit space: W_U (h + alpha v) = W_U h + alpha W_U v, on the rows where `on`."""
    return base_logits + alpha * delta_logits * on.unsqueeze(1)
