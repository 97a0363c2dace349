"""How well an entry's word and context match where they were found in a question, at every layer (0 = the
token embeddings, then each block's output): the picture of why slot-free reading keys on layer 0.

At each layer the tokens of the span found in the question are compared with the tokens of the entry's word
(and context) in its write statement: a symmetric soft match of two token sets (every token's best cosine on the
other side, the worst of those), on states standardised with the layer's mean and spread over reference prompts.
Siblings (`level 4` / `level 1`) and look-alikes (`flicket` / `blicket`) part at layer 0, where different tokens
are different vectors, and move together in deeper layers, where the model reads them as members of one kind.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fastmem.memory.prompts import SlottedPrompt


@dataclass(frozen=True)
class LayerMatch:
    entry: str  # how the chart names the entry ("zorp · level 1 → cat")
    part: str  # "word" or "context"
    layer: int
    score: float


@dataclass(frozen=True)
class LayerStatistics:
    mean: torch.Tensor  # [L+1, d] every token state of the reference prompts, per layer
    scale: torch.Tensor  # [L+1, d]


@torch.inference_mode()
def all_states(lm, ids: list[int]) -> torch.Tensor:
    """[L+1, T, d] hidden states of every token at every layer (the last one after the final norm)."""
    out = lm.model(input_ids=torch.tensor([ids], device=lm.device), output_hidden_states=True, use_cache=False,
                   logits_to_keep=1)
    return torch.stack(out.hidden_states)[:, 0].float().cpu()


def layer_statistics(lm, prompts: list[SlottedPrompt]) -> LayerStatistics:
    """Mean and spread of every token state of the reference `prompts` at each layer."""
    rows = torch.cat([all_states(lm, lm.encode(p).ids) for p in prompts], dim=1)  # [L+1, sum T, d]
    spread = rows.std(1)
    return LayerStatistics(rows.mean(1), spread.clamp(min=1e-6))


def _set_match(a: torch.Tensor, b: torch.Tensor) -> float:
    """Symmetric soft match of token sets a [n, d], b [m, d] (unit rows): min over both sides of the best cosine."""
    sims = a @ b.T
    return float(torch.minimum(sims.max(1).values.min(), sims.max(0).values.min()))


def layer_profile(lm, stats: LayerStatistics, question_ids: list[int], spans: dict[str, tuple[int, int] | None],
                  statement: SlottedPrompt, entry: str) -> list[LayerMatch]:
    """The match of the question's spans (`spans['word']`, `spans['context']`: first and last token index of
    the span found, or None) with the entry's word and context in its write `statement`, at every layer."""
    q = all_states(lm, question_ids)
    encoded = lm.encode(statement)
    w = all_states(lm, encoded.ids)
    own = {"word": encoded.word_positions, "context": encoded.context_positions}
    out = []
    for part, span in spans.items():
        if span is None or not own[part]:
            continue
        first, last = span
        for layer in range(q.shape[0]):
            norm = lambda x: F.normalize((x - stats.mean[layer]) / stats.scale[layer], dim=-1)  # noqa: E731
            asked = norm(q[layer, first:last + 1])
            written = norm(w[layer, own[part]])
            out.append(LayerMatch(entry, part, layer, _set_match(asked, written)))
    return out
