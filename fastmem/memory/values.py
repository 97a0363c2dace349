"""Memory values: the cross-entropy output correction, computed through the output head only.

One step is the post's value `W_U[target] - softmax(W_U h) @ W_U`, which equals minus the gradient
of cross-entropy with respect to the final hidden state `h`. More steps keep descending the same loss
with respect to `h` (the transformer itself is never touched): step 1 is exactly the post's value.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def one_step_value(final: torch.Tensor, targets: torch.Tensor, unembedding: torch.Tensor,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
    """`W_U[t] - softmax(W_U h) @ W_U` for each row: final [N, d], targets [N] -> [N, d]."""
    logits = final @ unembedding.T
    if bias is not None:
        logits = logits + bias
    probs = logits.softmax(dim=-1)
    return unembedding[targets] - probs @ unembedding


def correction_vector(final: torch.Tensor, targets: torch.Tensor, unembedding: torch.Tensor,
                      steps: int = 1, step_size: float = 1.0, bias: torch.Tensor | None = None,
                      anchor: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of `steps` descent steps of CE(W_U (h + v), target) in v, from v = 0 (step 1 is the post's value).

    `anchor` [N, d] (optional) is a second state per row that the refinement steps (2 onwards) also descend
    CE on; rows whose anchor equals their state have none. A later token of a multi-token label uses the
    answer state as its anchor: at its own teacher-forced state the model often predicts that token
    already (` guinea` → ` pig`), so descending there alone leaves a small correction whose logit lens
    favours unrelated tokens, and a question read in another phrasing then gets those instead.
    """
    final, unembedding = final.float(), unembedding.float()
    bias = None if bias is None else bias.float()
    # only rows with an anchor of their own pay for its second pass through the head (most labels are one token)
    anchored = torch.zeros(0, dtype=torch.long) if anchor is None else \
        (~(anchor.float() == final).all(1)).nonzero().squeeze(1)
    value = torch.zeros_like(final)
    for step in range(max(1, int(steps))):
        delta = one_step_value(final + value, targets, unembedding, bias)
        if len(anchored) and step > 0:
            delta[anchored] += one_step_value(anchor.float()[anchored] + value[anchored], targets[anchored],
                                              unembedding, bias)
        value = value + step_size * delta
    return value


def ce_gradient(final: torch.Tensor, targets: torch.Tensor, unembedding: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """Autograd reference: d CE / d h, summed over rows (each row's gradient is its own)."""
    with torch.enable_grad():
        h = final.detach().float().clone().requires_grad_(True)
        logits = h @ unembedding.float().T
        if bias is not None:
            logits = logits + bias.float()
        loss = F.cross_entropy(logits, targets, reduction="sum")
        (grad,) = torch.autograd.grad(loss, h)
    return grad
