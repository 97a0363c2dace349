"""Negatives that differ from what was written in one member of a series, or in the order of its parts.

- siblings: `level 4` for `level 1`, `game C` for `game A`, `the east lab` for `the north lab`, `Wednesday` for
  `Monday`, `room 103` for `room 101`, `the green team` for `the red team`: the written context with one member of
  a known series (letters, numbers, compass points, weekdays, months, colours, ordinals, number words) replaced
  by another member, never a written context;
- swapped contexts: `the lab north` for `the north lab` (the last two words exchanged);
- look-alikes of words with digits: `zq65x` for `zq56x` (two digits exchanged) and `zq57x` (one digit changed).

Seeded and deterministic; used by the benchmark only (calibration has its own never-written contexts).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

SERIES = {
    "weekday": "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split(),
    "month": "January February March April June July August September October November December".split(),
    "compass": "north south east west".split(),
    "colour": "red blue green yellow orange purple white black pink grey".split(),
    "ordinal": "first second third fourth fifth sixth seventh eighth ninth tenth".split(),
    "number word": "one two three four five six seven eight nine ten".split(),
}
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_PART = re.compile(r"[A-Za-z]+|\d+")


@dataclass(frozen=True)
class Sibling:
    context: str  # the unwritten sibling
    source: str  # the written context it comes from
    series: str  # "letter", "number" or a SERIES name


def series_of(context: str) -> tuple[str, re.Match] | None:
    """The series of the context's last part that belongs to one (its name and where it stands), or None."""
    for part in reversed(list(_PART.finditer(context))):
        text = part.group()
        if text.isdigit():
            return "number", part
        if len(text) == 1 and text.isalpha():
            return "letter", part
        for name, members in SERIES.items():
            if text.lower() in (m.lower() for m in members):
                return name, part
    return None


def _same_case(member: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return member.upper()
    if like[:1].isupper():
        return member[:1].upper() + member[1:]
    return member.lower()


def _members(series: str, text: str, rng: random.Random) -> list[str]:
    if series == "number":  # other numbers of as many digits (one digit changed first: the closest siblings)
        near = [text[:i] + d + text[i + 1:] for i in range(len(text)) for d in "0123456789" if d != text[i]]
        rng.shuffle(near)
        return [n for n in near if not (len(n) > 1 and n[0] == "0")]
    if series == "letter":
        pool = [c if text.isupper() else c.lower() for c in LETTERS if c != text.upper()]
    else:
        pool = [_same_case(m, text) for m in SERIES[series] if m.lower() != text.lower()]
    rng.shuffle(pool)
    return pool


def siblings(contexts: list[str], n: int, seed: int, avoid=()) -> list[Sibling]:
    """Up to `n` siblings of each context (in order context by context), none of them in `contexts` or `avoid`
    (compared without case: `game a` is a form of `game A`, not a sibling)."""
    taken = {c.lower() for c in list(contexts) + list(avoid)}
    out = []
    for context in contexts:
        found = series_of(context)
        if found is None:
            continue
        name, part = found
        rng = random.Random(f"fastmem.eval.series:{seed}:{context}")
        got = 0
        for member in _members(name, part.group(), rng):
            cand = context[:part.start()] + member + context[part.end():]
            if cand.lower() not in taken and got < n:
                taken.add(cand.lower())
                out.append(Sibling(cand, context, name))
                got += 1
    return out


def swapped(context: str) -> str | None:
    """The context with its last two words exchanged (`the lab north`), or None for a one-word context."""
    words = context.split()
    if len(words) < 2 or words[-1].lower() == words[-2].lower():
        return None
    return " ".join(words[:-2] + [words[-1], words[-2]])


def digit_lookalikes(word: str, seed: int, avoid=()) -> list[tuple[str, str]]:
    """(look-alike, kind) of a word with at least two digits: two adjacent different digits exchanged
    (`digit_swap`) and one digit changed (`digit_change`); each left out when it cannot be made."""
    taken = {a.lower() for a in avoid} | {word.lower()}
    rng = random.Random(f"fastmem.eval.series.digits:{seed}:{word}")
    out = []
    pairs = [i for i in range(len(word) - 1) if word[i].isdigit() and word[i + 1].isdigit() and word[i] != word[i + 1]]
    rng.shuffle(pairs)
    for i in pairs:
        cand = word[:i] + word[i + 1] + word[i] + word[i + 2:]
        if cand.lower() not in taken:
            out.append((cand, "digit_swap"))
            taken.add(cand.lower())
            break
    digits = [i for i, ch in enumerate(word) if ch.isdigit()]
    rng.shuffle(digits)
    for i in digits:
        options = [d for d in "0123456789" if d != word[i]]
        rng.shuffle(options)
        cand = next((word[:i] + d + word[i + 1:] for d in options if (word[:i] + d + word[i + 1:]).lower() not in taken),
                    None)
        if cand:
            out.append((cand, "digit_change"))
            break
    return out
