"""What the Lab hands back: the result of writing a row and of asking a question."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastmem.memory.prompts import SlottedPrompt
from fastmem.model.lm import EncodedPrompt


@dataclass(frozen=True)
class WriteResult:
    word: str
    context: str
    label: str
    status: str  # added / replaced / kept / error
    error: str | None = None


@dataclass(frozen=True)
class AskResult:
    prompt: SlottedPrompt
    encoded: EncodedPrompt
    mode: str
    alpha: float
    threshold: float | None
    scores: torch.Tensor  # [M] score of every entry (-inf where gated out)
    chosen: int  # entry index, -1 when nothing was injected
    best: float
    reason: str
    base_logits: torch.Tensor  # [V]
    logits: torch.Tensor  # [V]
    value: torch.Tensor  # [d] injected value for the first answer token (zeros when none)
    base_answer: str  # the plain model's greedy answer, as many tokens as `answer`
    answer: str  # the greedy answer with memory: as many tokens as the injected entry's label (else one)
    base_generation: str = ""
    generation: str = ""
    values: torch.Tensor | None = None  # [n, d] the injected entry's correction per label token
    answer_ids: tuple[int, ...] = ()
    base_answer_ids: tuple[int, ...] = ()
    injected: int = -1  # the entry whose values were injected: `chosen`, or another one (the shuffled control)
    found: dict | None = None  # slot-free reading: where the best entries' word and context were found (Found)
    point: str = ""  # the operating point whose alpha and threshold were the defaults
    chosen_slot: tuple[str, str] | None = None  # (word, context) of the chosen entry, in the version asked
