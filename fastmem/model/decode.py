"""Greedy decoding with a correction per step, and teacher-forced answer states: the two halves of
multi-token labels.

A label of n tokens has n corrections. Writing reads the post-norm state before each label token with
the label teacher-forced; reading adds the i-th correction when it generates the i-th answer token:
`logits_i = W_U (h_i + alpha v_i)`. The correction acts after the final norm, so it never enters the
KV cache, and no hook is registered.
"""
from __future__ import annotations

import numpy as np
import torch


def next_tokens(logits: torch.Tensor) -> torch.Tensor:
    """The greedy next token, argmax over the vocabulary: [..., V] -> [...] (long), the first maximum as in
    `torch.argmax`. Through numpy, whose argmax of one 49k-token row is many times faster than torch's on
    these CPUs (the benchmark reads tens of thousands of rows one at a time)."""
    return torch.from_numpy(np.asarray(logits.detach().float().cpu().numpy().argmax(-1), dtype=np.int64))


def _left_padded(rows: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids, attention mask and position ids [N, T] of token rows, padded on the left."""
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # explicit, so padding does not shift RoPE
    return ids.to(device), mask.to(device), positions.to(device)


@torch.inference_mode()
def answer_states(lm, rows: list[list[int]], counts: list[int], batch_size: int = 64) -> list[torch.Tensor]:
    """Post-norm states [count, d] at the last `count` positions of each token row (float32, CPU).

    With `rows[i] = prompt + label[:-1]` and `counts[i] = len(label)`, row j of the result is the state
    that predicts the label's j-th token, the label teacher-forced.
    """
    out: list[torch.Tensor | None] = [None] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        ids, mask, positions = _left_padded([rows[i] for i in chunk], lm.device)
        hidden = lm.model.base_model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                     use_cache=False).last_hidden_state
        for row, i in enumerate(chunk):
            out[i] = hidden[row, hidden.shape[1] - counts[i]:].float().cpu()
    return out  # type: ignore[return-value]


def word_pieces(lm) -> torch.Tensor:
    """[V] bool: tokens that continue a word (their text starts with a letter or digit, no space before it)."""
    got = getattr(lm, "_word_pieces", None)
    if got is None:
        texts = lm.tokenizer.convert_ids_to_tokens(list(range(lm.unembedding.shape[0])))
        decoded = [lm.tokenizer.convert_tokens_to_string([t]) if t is not None else "" for t in texts]
        got = torch.tensor([bool(t) and t[0].isalnum() for t in decoded], dtype=torch.bool)
        lm._word_pieces = got
    return got


@torch.inference_mode()
def greedy(lm, rows: list[list[int]], first: list[int], steps: int, corrections: torch.Tensor | None = None,
           alpha: float = 0.0, stop_at_eos: bool = True, word_ends: list[int] | None = None) -> list[list[int]]:
    """Greedy answers: each row's given first token, then `steps` more tokens.

    `corrections[i, j]` ([N, steps, d], zeros for none) is added, times `alpha`, to the post-norm state
    that predicts row i's token j + 1. A row that produced the end-of-text token stays finished (its
    answer keeps one end-of-text token) when `stop_at_eos`. `word_ends[i]` (-1: none): the step whose token
    may not continue a word, so that row i's label (tokens 0..word_ends[i]) stays a word of its own and is
    not run into a longer one (` fire` + `ball`).
    """
    answers = [[int(t)] for t in first]
    if steps <= 0 or not rows:
        return answers
    head = lm.model.get_output_embeddings()
    eos = lm.tokenizer.eos_token_id
    ids, mask, positions = _left_padded([list(r) + [a[0]] for r, a in zip(rows, answers)], lm.device)
    past, step_ids, step_pos = None, ids, positions
    for j in range(steps):
        if stop_at_eos and all(a[-1] == eos for a in answers):
            break
        out = lm.model.base_model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos,
                                  past_key_values=past, use_cache=True)
        past = out.past_key_values
        h = out.last_hidden_state[:, -1].float()
        if corrections is not None and alpha != 0.0:
            h = h + alpha * corrections[:, j].to(h.device, h.dtype)
        logits = head(h.to(head.weight.dtype))
        if word_ends is not None:
            ending = torch.tensor([e == j for e in word_ends], device=logits.device)
            if ending.any():
                pieces = word_pieces(lm).to(logits.device)
                logits = logits.masked_fill(ending.unsqueeze(1) & pieces.unsqueeze(0), float("-inf"))
        nxt = next_tokens(logits).tolist()
        for a, t in zip(answers, nxt):
            a.append(eos if stop_at_eos and a[-1] == eos else int(t))
        step_ids = torch.tensor([[a[-1]] for a in answers], device=lm.device)
        step_pos = step_pos[:, -1:] + 1
        mask = torch.cat([mask, torch.ones(len(answers), 1, dtype=mask.dtype, device=mask.device)], dim=1)
    if stop_at_eos:
        answers = [a[:a.index(eos) + 1] if eos in a else a for a in answers]
    return answers
