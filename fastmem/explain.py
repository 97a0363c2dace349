"""Why an entry was injected, or why nothing was: the sentence the app shows under every answer."""
from __future__ import annotations

import torch

from .memory import MemoryBank
from .prompts import SlottedPrompt


def explain(bank: MemoryBank, prompt: SlottedPrompt, mode: str, scores: torch.Tensor, chosen: int,
            threshold: float | None) -> str:
    """Why this entry was injected, or why nothing was, in words a user can act on."""
    asked = f"'{prompt.word}'" + (f" in context '{prompt.context}'" if prompt.context else " (no context phrase)")
    if mode == "none":
        return "Mode none: the plain model, memory off."
    if len(bank) == 0:
        return "The memory is empty: nothing to retrieve."
    live = torch.isfinite(scores)
    if not bool(live.any()):
        if mode == "context_gate":
            return f"No entry of context {prompt.context!r} in memory (oracle gate): nothing injected."
        return "Every entry is switched off: nothing injected."
    order = [int(i) for i in scores.masked_fill(~live, float("-inf")).argsort(descending=True)]
    top = chosen if chosen >= 0 else order[0]  # token_match chooses by both matches, not the score alone
    e, best = bank.entries[top], float(scores[top])
    closest = f"'{e.word}' in '{e.context}'"
    runner = ""
    others = [i for i in order if i != top and torch.isfinite(scores[i])]
    if others:
        o = bank.entries[others[0]]
        runner = f"; runner-up '{o.word}' in '{o.context}' scores {float(scores[others[0]]):.2f}"
    if chosen >= 0:
        gate = f">= threshold {threshold:.2f}" if threshold is not None else "> 0, no threshold"
        said = f"Asked {asked}. Top-1 is {closest} -> '{e.label}' (score {best:.2f} {gate}){runner}."
        if mode == "shuffled":  # the control injects the next entry's value (retrieval.retrieve)
            src = bank.entries[(top + 1) % len(bank)]
            said += f" Shuffled control: injected the value of '{src.word}' in '{src.context}' -> '{src.label}'."
        return said
    words = {x.word for x in bank.entries}
    hint = ""
    if mode in ("token_match", "shuffled") and prompt.word in words:
        written = sorted({x.context for x in bank.entries if x.word == prompt.word})
        hint = f" '{prompt.word}' is written only in {', '.join(repr(c) for c in written[:4])}."
    elif mode in ("token_match", "shuffled"):
        hint = f" No entry for the word '{prompt.word}'."
    if mode == "codebook":
        hint = (" The codebook keys each entry by one question form (`Question: in <context>, what is <word>? "
                "Answer:`); another phrasing lands outside its radius.")
    limit = f"below the threshold {threshold:.2f}" if threshold is not None else "not above 0"
    return f"Asked {asked}: nothing injected.{hint} Closest entry {closest} scores {best:.2f}, {limit}."
