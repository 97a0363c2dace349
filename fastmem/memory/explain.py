"""Why an entry was injected, or why nothing was: the sentence the app shows under every answer."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastmem.memory.bank import MemoryBank
from fastmem.memory.modes import get_mode
from fastmem.memory.prompts import SlottedPrompt


@dataclass(frozen=True)
class Found:
    """Where slot-free reading found one entry's word and context in the question (`spans.SpanMatch`, one row)."""

    word_score: float
    context_score: float
    word_text: str | None  # the question's text at the word's best span (None: no span found)
    context_text: str | None
    word_tokens: tuple[int, int] | None  # first and last token index in the encoded question
    context_tokens: tuple[int, int] | None
    enabled: bool = True  # False: a switched-off entry, shown when it would have matched


def found_in(text: str, offsets, spans, entry: int, enabled: bool = True) -> Found:
    """Entry `entry`'s best spans in the question `text` (its tokens' character `offsets`), from a SpanMatch row."""
    def piece(span):
        first, last = (int(x) for x in span)
        if first < 0:
            return None, None
        return text[offsets[first][0]:offsets[last][1]].strip(), (first, last)

    w_text, w_tok = piece(spans.word_span[entry])
    c_text, c_tok = piece(spans.context_span[entry])
    return Found(float(spans.word[entry]), float(spans.context[entry]), w_text, c_text, w_tok, c_tok, enabled)


def found_entries(bank: MemoryBank, text: str, offsets, row, chosen: int) -> dict[int, Found]:
    """Where slot-free reading found the two best entries of one question (`row`: its SpanMatch row), by its
    ranking, best first; and the best switched-off entry, so the reason can say it was switched off."""
    enabled = bank.stacked()["enabled"]
    rank = row.rank.masked_fill(~enabled, float("-inf"))
    best = rank.topk(min(3, len(rank))).indices.tolist()  # not a sort of the whole memory
    order = ([chosen] if chosen >= 0 else []) + [i for i in best if bool(enabled[i])]
    found = {i: found_in(text, offsets, row, i) for i in list(dict.fromkeys(order))[:2]}
    if not bool(enabled.all()):
        off = int(row.rank.masked_fill(enabled, float("-inf")).argmax())
        found[off] = found_in(text, offsets, row, off, enabled=False)
    return found


def explain(bank: MemoryBank, prompt: SlottedPrompt, mode, scores: torch.Tensor, chosen: int,
            threshold: float | None, found: dict[int, Found] | None = None) -> str:
    """Why this entry was injected, or why nothing was, in words a user can act on. `found`: where slot-free
    reading found the best entries' words and contexts (modes span_match and shuffled)."""
    mode = get_mode(mode)
    if not mode.retrieves:
        return f"Mode {mode.name}: the plain model, memory off."
    if len(bank) == 0:
        return "The memory is empty: nothing to retrieve."
    live = torch.isfinite(scores)
    if not bool(live.any()):
        return mode.all_gated(prompt.context)
    # the two best are all a reason names (the best other than `top` is one of them): no loop over the memory
    order = scores.masked_fill(~live, float("-inf")).topk(min(2, len(scores))).indices.tolist()
    live_found = {i: f for i, f in (found or {}).items() if f.enabled} if found is not None else None
    top = chosen if chosen >= 0 else (next(iter(live_found)) if live_found else order[0])
    if found is not None:
        return _explain_spans(bank, mode, scores, chosen, top, threshold, found)
    asked = f"'{prompt.word}'" + (f" in context '{prompt.context}'" if prompt.context else " (no context phrase)")
    e, best = bank.entries[top], float(scores[top])
    closest = f"'{e.word}' in '{e.context}'"
    runner = ""
    others = [i for i in order if i != top and bool(live[i])]
    if others:
        o = bank.entries[others[0]]
        runner = f"; runner-up '{o.word}' in '{o.context}' scores {float(scores[others[0]]):.2f}"
    if chosen >= 0:
        gate = f">= threshold {threshold:.2f}" if threshold is not None else "> 0, no threshold"
        return (f"Asked {asked}. Top-1 is {closest} -> '{e.label}' (score {best:.2f} {gate}){runner}."
                + mode.injected_note(bank, top))
    hint = mode.silent_hint(bank, prompt.word)
    limit = f"below the threshold {threshold:.2f}" if threshold is not None else "not above 0"
    return f"Asked {asked}: nothing injected.{hint} Closest entry {closest} scores {best:.2f}, {limit}."


def _explain_spans(bank: MemoryBank, mode, scores: torch.Tensor, chosen: int, top: int,
                   threshold: float | None, found: dict[int, Found]) -> str:
    """Slot-free reading: what was found where, and which half is missing when nothing was injected."""
    bar = threshold if threshold is not None else 0.0
    off = [i for i, g in found.items() if not g.enabled and min(g.word_score, g.context_score) >= bar]
    if chosen < 0 and off:  # the entry the question is about exists, but the user switched it off
        o, g = bank.entries[off[0]], found[off[0]]
        return (f"Found the word '{g.word_text}' and the context '{g.context_text}': entry '{o.word}' in "
                f"'{o.context}' matches ({min(g.word_score, g.context_score):.2f}) but is switched off "
                f"(turn it on in Memory). Nothing injected.")
    found = {i: g for i, g in found.items() if g.enabled}
    if top not in found:
        return "Every entry is switched off or unmatched: nothing injected."
    e, f = bank.entries[top], found[top]
    gate = f">= threshold {threshold:.2f}" if threshold is not None else "> 0, no threshold"
    if chosen >= 0:
        said = (f"Found the word '{f.word_text}' ({f.word_score:.2f}) and the context '{f.context_text}' "
                f"({f.context_score:.2f}): entry '{e.word}' in '{e.context}' -> '{e.label}' (score "
                f"{float(scores[top]):.2f} {gate}).")
        runner = [i for i in found if i != top]
        if runner:
            o, g = bank.entries[runner[0]], found[runner[0]]
            said += f" Runner-up '{o.word}' in '{o.context}' scores {min(g.word_score, g.context_score):.2f}."
        return said + mode.injected_note(bank, top)
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


SPECIAL_NAMES = {"<|im_end|>": "end of turn", "<|im_start|>": "start of turn", "<|endoftext|>": "end of text",
                 "</s>": "end of text", "<s>": "start of text", "\n": "new line", "\t": "tab"}


def special_words(answer: str) -> str | None:
    """What an answer made of special tokens or whitespace means, in words ('new line, end of turn'), or None
    when it holds ordinary text: the app shows it beside the raw form, which a student cannot read."""
    names, rest = [], answer
    while rest:
        for raw, name in SPECIAL_NAMES.items():
            if rest.startswith(raw):
                names.append(name)
                rest = rest[len(raw):]
                break
        else:
            if rest[0] != " ":
                return None
            names.append("space")
            rest = rest[1:]
    return ", ".join(dict.fromkeys(names)) if names else "nothing (empty)"
