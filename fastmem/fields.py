"""Checks on what a user types or passes: text fields, step counts. Every refusal is a FastmemError whose
message can be shown as is (docs/bad-inputs.md)."""
from __future__ import annotations

import numbers
import re
import unicodedata

from fastmem.errors import BindingError, SettingsError

MAX_WORD, MAX_LABEL, MAX_CONTEXT, MAX_QUESTION = 64, 120, 128, 2000
# Tokens read per text, for the model in use. 512: 2,000 characters of English are ~450 SmolLM2 tokens, a chat
# turn's template adds 30, the suites' longest prompt is 17; 2,000 characters of a script the tokenizer spells
# in bytes (hieroglyphs: 8,000 tokens) are refused instead of costing a minute and 2 GB.
MAX_TEXT_TOKENS = 512
MAX_FORM, MAX_FORM_TOKENS = 300, 64  # a write form without its fields (the built-in ones: 49 chars, 13 tokens)


def clean_field(name: str, text, max_len: int) -> str:
    """Strip and validate a user-typed word, context or label."""
    if not isinstance(text, str):
        raise BindingError(f"The {name} must be text, not {type(text).__name__}.")
    text = unicodedata.normalize("NFC", text).strip()
    if not text:
        raise BindingError(f"The {name} is empty.")
    if len(text) > max_len:
        raise BindingError(f"The {name} is {len(text)} characters long; at most {max_len} are allowed.")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in text):
        raise BindingError(f"The {name} {text[:40]!r} contains control or invisible characters.")
    if "{" in text or "}" in text:
        raise BindingError(f"The {name} {text!r} contains braces {{ }}, which templates reserve.")
    return text


def clean_question(text, max_len: int) -> str:
    """A typed question, in the form written fields take (NFC), its whitespace read as single spaces: no control,
    invisible or private characters (tabs and line breaks are fine, and read as spaces)."""
    if not isinstance(text, str) or not text.strip():
        raise BindingError("The question is empty.")
    text = unicodedata.normalize("NFC", text)
    if len(text) > max_len:
        raise BindingError(f"The question is over {max_len:,} characters.")
    bad = [ch for ch in text if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") and ch not in "\t\n\r"]
    if bad:
        raise BindingError(f"The question contains control or invisible characters (such as U+{ord(bad[0]):04X}); "
                           "retype it or paste it as plain text.")
    # every run of spaces of any kind, tabs and line breaks reads as one space: `game\u00a0A` and `game\nA` are `game A`
    return re.sub(r"\s+", " ", text)


MAX_VALUE_STEPS = 64


def check_steps(steps) -> int | None:
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= MAX_VALUE_STEPS:
        raise SettingsError(f"Value steps {steps!r} must be a whole number from 1 to {MAX_VALUE_STEPS}.")
    return int(steps)


def check_count(max_new_tokens, minimum: int) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) \
            or max_new_tokens < minimum:
        raise SettingsError(f"max_new_tokens {max_new_tokens!r} must be a whole number >= {minimum}.")


def stored_field(name: str, raw, max_len: int) -> str:
    """A word, context or label read from a file: held to the checks of the same field typed, and already in
    the form typing gives it (NFC, stripped), so what is matched is what was written."""
    clean = clean_field(name, raw, max_len)
    if clean != raw:
        raise BindingError(f"The {name} {str(raw)[:40]!r} is not stored as it would be typed (spaces around it "
                           "or another Unicode form).")
    return clean


def stored_text(name: str, raw, max_len: int) -> str:
    """A statement read from a file: NFC, at most `max_len` characters, no control or invisible characters."""
    if not isinstance(raw, str):
        raise BindingError(f"The {name} must be text, not {type(raw).__name__}.")
    if len(raw) > max_len or unicodedata.normalize("NFC", raw) != raw or any(
            unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") and ch not in "\n\t" for ch in raw):
        raise BindingError(f"The {name} {raw[:40]!r} is too long, not in NFC form, or holds control characters.")
    return raw


def _invisible(text: str, allowed: str = "") -> str | None:
    """The first control, invisible, surrogate or private-use character of `text`, if any."""
    return next((ch for ch in text if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") and ch not in allowed),
                None)


def clean_form(template) -> str:
    """A write form (`In {context}, {word} means`) as typed: text, NFC, at most MAX_FORM characters, no control
    or invisible characters (tab and line break allowed, as in statements)."""
    if not isinstance(template, str):
        raise BindingError(f"The write form must be text, not {type(template).__name__}.")
    template = unicodedata.normalize("NFC", template)
    if len(template) > MAX_FORM:
        raise BindingError(f"The write form is {len(template):,} characters long; at most {MAX_FORM} are allowed.")
    bad = _invisible(template, "\t\n")
    if bad is not None:
        raise BindingError(f"The write form contains control or invisible characters (such as U+{ord(bad):04X}).")
    return template


def check_tokens(name: str, count: int, limit: int) -> None:
    if count > limit:
        raise BindingError(f"The {name} is {count:,} tokens for this model; at most {limit:,} are read.")
