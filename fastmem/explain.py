"""Why an entry was injected, or why nothing was: the sentence the app shows under every answer."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .memory import MemoryBank
from .prompts import SlottedPrompt


@dataclass(frozen=True)
class Found:
    """Where slot-free reading found one entry's word and context in the question (`spans.SpanMatch`, one row)."""

    word_score: float
    context_score: float
    word_text: str | None  # the question's text at the word's best span (None: no span found)
    context_text: str | None
    word_tokens: tuple[int, int] | None  # first and last token index in the encoded question
    context_tokens: tuple[int, int] | None


def found_in(text: str, offsets, spans, entry: int) -> Found:
    """Entry `entry`'s best spans in the question `text` (its tokens' character `offsets`), from a SpanMatch row."""
    def piece(span):
        first, last = (int(x) for x in span)
        if first < 0:
            return None, None
        return text[offsets[first][0]:offsets[last][1]].strip(), (first, last)

    w_text, w_tok = piece(spans.word_span[entry])
    c_text, c_tok = piece(spans.context_span[entry])
    return Found(float(spans.word[entry]), float(spans.context[entry]), w_text, c_text, w_tok, c_tok)


def explain(bank: MemoryBank, prompt: SlottedPrompt, mode: str, scores: torch.Tensor, chosen: int,
            threshold: float | None, found: dict[int, Found] | None = None) -> str:
    """Why this entry was injected, or why nothing was, in words a user can act on. `found`: where slot-free
    reading found the best entries' words and contexts (modes span_match and shuffled)."""
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
    top = chosen if chosen >= 0 else (next(iter(found)) if found else order[0])
    if found is not None:
        return _explain_spans(bank, mode, scores, chosen, top, threshold, found)
    asked = f"'{prompt.word}'" + (f" in context '{prompt.context}'" if prompt.context else " (no context phrase)")
    e, best = bank.entries[top], float(scores[top])
    closest = f"'{e.word}' in '{e.context}'"
    runner = ""
    others = [i for i in order if i != top and torch.isfinite(scores[i])]
    if others:
        o = bank.entries[others[0]]
        runner = f"; runner-up '{o.word}' in '{o.context}' scores {float(scores[others[0]]):.2f}"
    if chosen >= 0:
        gate = f">= threshold {threshold:.2f}" if threshold is not None else "> 0, no threshold"
        return f"Asked {asked}. Top-1 is {closest} -> '{e.label}' (score {best:.2f} {gate}){runner}."
    words = {x.word for x in bank.entries}
    hint = ""
    if mode == "token_match" and prompt.word in words:
        written = sorted({x.context for x in bank.entries if x.word == prompt.word})
        hint = f" '{prompt.word}' is written only in {', '.join(repr(c) for c in written[:4])}."
    elif mode == "token_match":
        hint = f" No entry for the word '{prompt.word}'."
    if mode == "codebook":
        hint = (" The codebook keys each entry by one question form (`Question: in <context>, what is <word>? "
                "Answer:`); another phrasing lands outside its radius.")
    limit = f"below the threshold {threshold:.2f}" if threshold is not None else "not above 0"
    return f"Asked {asked}: nothing injected.{hint} Closest entry {closest} scores {best:.2f}, {limit}."


def _explain_spans(bank: MemoryBank, mode: str, scores: torch.Tensor, chosen: int, top: int,
                   threshold: float | None, found: dict[int, Found]) -> str:
    """Slot-free reading: what was found where, and which half is missing when nothing was injected."""
    e, f = bank.entries[top], found[top]
    bar = threshold if threshold is not None else 0.0
    gate = f">= threshold {threshold:.2f}" if threshold is not None else "> 0, no threshold"
    if chosen >= 0:
        said = (f"Found the word '{f.word_text}' ({f.word_score:.2f}) and the context '{f.context_text}' "
                f"({f.context_score:.2f}): entry '{e.word}' in '{e.context}' -> '{e.label}' (score "
                f"{float(scores[top]):.2f} {gate}).")
        runner = [i for i in found if i != top]
        if runner:
            o, g = bank.entries[runner[0]], found[runner[0]]
            said += f" Runner-up '{o.word}' in '{o.context}' scores {min(g.word_score, g.context_score):.2f}."
        if mode == "shuffled":  # the control injects the next entry's value (retrieval.shuffled_source)
            src = bank.entries[(top + 1) % len(bank)]
            said += f" Shuffled control: injected the value of '{src.word}' in '{src.context}' -> '{src.label}'."
        return said
    limit = f"below the threshold {threshold:.2f}" if threshold is not None else "not above 0"
    word_ok, context_ok = f.word_score >= bar and f.word_score > 0, f.context_score >= bar and f.context_score > 0
    if word_ok and not context_ok:
        written = sorted({x.context for x in bank.entries if x.word == e.word})
        closest = f"; the closest span to '{e.context}' is '{f.context_text}' ({f.context_score:.2f}, {limit})" \
            if f.context_text and f.context_score > 0 else ""
        return (f"Found the word '{f.word_text}', but none of its written contexts: '{e.word}' is written only in "
                f"{', '.join(repr(c) for c in written[:4])}{closest}. Nothing injected.")
    if context_ok and not word_ok:
        closest = f"; the closest is '{e.word}' against '{f.word_text}' ({f.word_score:.2f}, {limit})" \
            if f.word_text and f.word_score > 0 else ""
        return (f"Found the context '{f.context_text}', but no word written in it{closest}. Nothing injected.")
    return (f"Found no written word and no written context. Closest entry '{e.word}' in '{e.context}': word "
            f"{f.word_score:.2f}, context {f.context_score:.2f}, {limit}. Nothing injected.")
