"""Prompt templates with marked slots, and where those slots land in the tokenized prompt.

A template such as `Question: in {context}, what is {word}? Answer:` is rendered into text plus the
character spans of the word and the context. The key positions come from these spans (or from spans
the user marks by hand), never from searching the prompt for stored words.
"""
from __future__ import annotations

import string
from dataclasses import dataclass

from fastmem.errors import BindingError

Span = tuple[int, int]
_FIELDS = {"word", "context"}


@dataclass(frozen=True)
class SlottedPrompt:
    """Prompt text plus the character spans of its invented word and context phrase (if any)."""

    text: str
    word_span: Span
    context_span: Span | None = None
    context: str | None = None  # the context name, for the oracle gate only
    marked: bool = False  # the user marked the slots: slot-free reading searches only inside them

    @property
    def word(self) -> str:
        return self.text[self.word_span[0]:self.word_span[1]]


def _need_text(what: str, value) -> str:
    if not isinstance(value, str):
        raise BindingError(f"The {what} must be text, not {type(value).__name__}.")
    return value


def template_fields(template: str) -> list[str]:
    _need_text("template", template)
    try:
        parsed = [(f, conv, spec) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
        names = [f for f, _, _ in parsed]
    except ValueError as exc:
        raise BindingError(f"Template {template!r} is not valid: {exc}. Write literal braces as {{{{ and }}}}.") from exc
    unknown = [n for n in names if n not in _FIELDS]
    if unknown:
        raise BindingError(f"Template {template!r} has unknown field(s) {unknown}: only {{word}} and {{context}}.")
    if any(conv or spec for _, conv, spec in parsed):
        raise BindingError(f"Template {template!r} may only use plain {{word}} and {{context}} slots "
                           "(no !conversion or :format).")
    if names.count("word") != 1:
        raise BindingError(f"Template {template!r} must contain {{word}} exactly once.")
    if names.count("context") > 1:
        raise BindingError(f"Template {template!r} may contain {{context}} at most once.")
    return names


def render(template: str, word: str, context: str | None = None) -> SlottedPrompt:
    """Fill a template, recording the character spans of the filled slots."""
    names = template_fields(template)
    _need_text("word", word)
    if not word:
        raise BindingError("The word is empty.")
    if context is not None:
        _need_text("context", context)
    if "context" in names and not context:
        raise BindingError(f"Template {template!r} needs a context.")
    text, spans = "", {}
    for literal, field, _, _ in string.Formatter().parse(template):
        text += literal
        if field is None:
            continue
        value = word if field == "word" else context
        spans[field] = (len(text), len(text) + len(value))
        text += value
    return SlottedPrompt(text, spans["word"], spans.get("context"), context if "context" in names else None)


def mark(text: str, word: str, context: str | None = None) -> SlottedPrompt:
    """Mark the slots of a free-typed prompt by hand: the user names the word (and context) in it.

    The last occurrence of the word is used (it sits next to the answer), preferring one that stands as a
    whole word (so 'cat' is not found inside 'category'). The context may stand before or after the word
    (`what does blicket mean in game A?`); the occurrence nearest the word that does not overlap it is used.
    """
    _need_text("question", text)
    _need_text("word", word)
    if context is not None:
        _need_text("context", context)
    if not word or not word.strip():
        raise BindingError("Mark the invented word: it is empty.")
    at = _last_whole(text, word)
    if at < 0:
        raise BindingError(f"The word {word!r} does not occur in the question {text!r}.")
    ctx_span = None
    if context:
        found = [i for i in range(len(text)) if text.startswith(context, i)]
        apart = [i for i in found if i + len(context) <= at or i >= at + len(word)]
        if not found:
            raise BindingError(f"The context {context!r} does not occur in the question {text!r}.")
        if not apart:
            raise BindingError(f"The context {context!r} overlaps the word {word!r} in the question: mark two "
                               "separate parts of it.")
        c_at = min(apart, key=lambda i: at - (i + len(context)) if i < at else i - (at + len(word)))
        ctx_span = (c_at, c_at + len(context))
    return SlottedPrompt(text, (at, at + len(word)), ctx_span, context, marked=True)


def statement_prompt(statement: str, word: str, context: str, label: str) -> SlottedPrompt:
    """The write prompt of a free statement whose word, context and label the user marks, such as
    `According to Mia, dax means a glass of milk`: the text before the label's last occurrence, with the
    word and context marked in it (they must come before the label; anything after the label is unused)."""
    _need_text("statement", statement)
    _need_text("label", label)
    at = _last_whole(statement, label) if label else -1
    if at < 0:
        raise BindingError(f"The label {label!r} does not occur in the statement {statement!r}: the statement "
                           "must end with (or contain) the label.")
    prefix = statement[:at].rstrip()
    if not prefix:
        raise BindingError(f"The statement {statement!r} starts with its label {label!r}: the word and the "
                           "context must come before it.")
    for name, part in (("word", word), ("context", context)):
        if part and part not in prefix:
            where = "occurs only after" if part in statement else "does not occur in the statement before"
            raise BindingError(f"The {name} {part!r} {where} the label {label!r}: write the word and the context "
                               "before the label (the memory reads them there).")
    return mark(prefix, word, context)


def _last_whole(text: str, word: str) -> int:
    """Start of the last occurrence of `word` not glued to letters/digits on either side, else of the last
    occurrence at all, else -1."""
    at = text.rfind(word)
    first = at
    while at >= 0:
        before = text[at - 1] if at > 0 else " "
        after = text[at + len(word)] if at + len(word) < len(text) else " "
        if not (before.isalnum() and word[0].isalnum()) and not (after.isalnum() and word[-1].isalnum()):
            return at
        at = text.rfind(word, 0, at + len(word) - 1)
    return first


def unrelated_prompt(question: str) -> SlottedPrompt:
    """An unrelated question keyed like the rest: its slot is the last word before the first `?`."""
    _need_text("question", question)
    end = question.find("?")
    end = len(question.rstrip()) if end < 0 else end
    while end > 0 and not question[end - 1].isalnum():
        end -= 1
    start = end
    while start > 0 and (question[start - 1].isalnum() or question[start - 1] in "-'"):
        start -= 1
    if start == end:
        raise BindingError(f"The question {question!r} has no word to key on.")
    return SlottedPrompt(question, (start, end), None, None)


def token_positions(offsets: list[Span], span: Span) -> list[int]:
    """Indices of tokens whose character offsets overlap `span` (special tokens have empty offsets)."""
    lo, hi = span
    return [i for i, (s, e) in enumerate(offsets) if e > s and s < hi and e > lo]
