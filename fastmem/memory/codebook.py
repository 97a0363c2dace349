"""A GRACE-style codebook (Hartvigsen et al., 2023) as a baseline mode: keys from one question form only.

An entry's key is the hidden state at the last token of its canonical question (`forms.READ_TEMPLATE` with
the entry's word and context, `Question: in game A, what is blicket? Answer:`) at the memory's key layer. A
question uses the nearest key by Euclidean distance, as GRACE does, and only within the deferral radius. The
score is `1 - |q - k| / |k|`, so the threshold sets the radius as a share of the key's norm: threshold 0.95
is a radius of 5 % of |k|. (Cosines hardly separate these keys: the last-token states of two such questions
point almost the same way at every layer of SmolLM2, while their distances still tell another word, another
context and another phrasing apart.) The values are the memory's own, so against token_match only the keys
differ. The keys take one forward pass per entry; they are cached in the memory until it changes.
"""
from __future__ import annotations

import torch

from fastmem.errors import SettingsError
from fastmem.memory.forms import PLAIN_TEMPLATE, READ_TEMPLATE
from fastmem.model.lm import FrozenLM, PromptStates
from fastmem.memory.bank import MemoryBank
from fastmem.memory.prompts import SlottedPrompt, render

CODEBOOK = "codebook"


def canonical_question(word: str, context: str | None) -> SlottedPrompt:
    """The one question form an entry's codebook key is read from."""
    return render(READ_TEMPLATE, word, context) if context else render(PLAIN_TEMPLATE, word)


def codebook_keys(lm: FrozenLM, bank: MemoryBank) -> torch.Tensor:
    """[M, d] keys: last-token states of each entry's canonical question at the key layer."""
    def build(_):
        if not bank.entries:
            return torch.zeros(0, bank.hidden_size)
        states = lm.states([canonical_question(e.word, e.context) for e in bank.entries])
        return states.last_at(bank.key_layer).float()

    return bank.cached(f"codebook:{lm.name}:{bank.key_layer}", build)


def codebook_scores(lm: FrozenLM, bank: MemoryBank, states: PromptStates) -> torch.Tensor:
    """[N, M] score `1 - |q - k| / |k|` of each question's last-token state q against each entry's key k."""
    if states.last is None:
        raise SettingsError("Mode codebook needs the questions' last-token states.")
    if states.last.shape[-1] != bank.hidden_size:
        raise SettingsError("The questions' states do not match this memory's hidden size.")
    keys = codebook_keys(lm, bank)
    distance = torch.cdist(states.last_at(bank.key_layer).float(), keys)
    return 1.0 - distance / keys.norm(dim=-1).clamp(min=1e-8).unsqueeze(0)
