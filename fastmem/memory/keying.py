"""How a question is keyed: the one rule the app, the benchmark and the calibration share.

A question's slots (the word and, if any, the context) come from, in this order:
1. the user's marks (`prompts.mark`: the word anywhere, the context before or after it);
2. the first known question form that matches the whole question;
3. otherwise the last word before the first `?` (`prompts.unrelated_prompt`), with no context.

Stored entries are never consulted, so a question is keyed the same whatever the memory holds. The result
says which rule applied, so the app can tell the user when a question was keyed by rule 3.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass

from fastmem.memory.prompts import SlottedPrompt, mark, unrelated_prompt


MARKED, FORM, LAST_WORD = "marked", "form", "last word"


@dataclass(frozen=True)
class KeyedQuestion:
    prompt: SlottedPrompt
    rule: str  # MARKED, FORM or LAST_WORD
    form: str | None = None  # the matching question form (rule FORM)

    @property
    def marked(self) -> bool:
        return self.rule == MARKED

    @property
    def by_last_word(self) -> bool:
        """No known form matched and nothing was marked: a slot-reading mode reads the last word alone."""
        return self.rule == LAST_WORD

    def describe(self) -> str:
        p = self.prompt
        ctx = p.text[slice(*p.context_span)] if p.context_span else None
        slots = f"word '{p.word}'" + (f", context '{ctx}'" if ctx else ", no context")
        if self.rule == MARKED:
            return f"Keyed on your marks: {slots}."
        if self.rule == FORM:
            return f"Keyed by the known form `{self.form}`: {slots}."
        return (f"No known question form matches, so it was keyed on its last word: {slots}. If that is not "
                "what you meant, mark the word and the context.")


def key_question(text: str, forms: list[str], word: str | None = None, context: str | None = None) -> KeyedQuestion:
    if word and word.strip():
        return KeyedQuestion(mark(text, word.strip(), context.strip() if context and context.strip() else None),
                             MARKED)
    stripped = text.strip()
    offset = text.index(stripped) if stripped else 0
    for form in forms:
        m = re.fullmatch(_pattern(form), stripped)
        if m and all(g.strip() for g in m.groupdict().values()):
            ctx = m.groupdict().get("context")
            prompt = SlottedPrompt(text, (m.start("word") + offset, m.end("word") + offset),
                                   (m.start("context") + offset, m.end("context") + offset) if ctx else None, ctx)
            return KeyedQuestion(prompt, FORM, form)
    return KeyedQuestion(unrelated_prompt(text), LAST_WORD)


_PATTERNS: dict[str, re.Pattern] = {}


def _pattern(form: str) -> re.Pattern:
    if form not in _PATTERNS:
        parts = [(lit, f) for lit, f, _, _ in string.Formatter().parse(form)]
        _PATTERNS[form] = re.compile("".join(re.escape(lit) + (f"(?P<{f}>.+?)" if f else "") for lit, f in parts))
    return _PATTERNS[form]
