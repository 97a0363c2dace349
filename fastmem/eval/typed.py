"""Questions typed the way people ask them: the benchmark's typed probe sets.

Every read, plain, wrong-context, look-alike and sibling question of an experiment is also rendered in the
natural forms of `fastmem/data/typed_forms.json` (no reading code knows them) and in surface variations of
one base form (the case of the word or the context, all lower case, an article, spacing and punctuation, a
sentence before, a question that refers back, the model's chat template). Each is keyed as the app keys a
typed question (`keying.key_question`, no marks) and scored by the benchmark's one scoring path, one row per
form (`form` = `typed:<name>`).
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from fastmem.memory.keying import key_question
from fastmem.eval.metrics import ProbeSet, probe_set
from fastmem.eval.series import siblings
from fastmem.eval.suite import Binding

VARIATIONS = ("word_case", "context_case", "lower_case", "article", "spacing", "sentence_before", "refers_back",
              "chat")
REFERS_BACK = ("I keep hearing the word {word}. What does it mean in {context}?",
               "I keep hearing the word {word}. What does it mean?")
TYPED = "typed:"


@dataclass(frozen=True)
class TypedForm:
    name: str
    read: str  # with {word} and {context}
    plain: str  # with {word} only


@lru_cache(maxsize=1)
def typed_forms() -> tuple[tuple[TypedForm, ...], TypedForm]:
    """(the natural forms, the base form the variations change)."""
    raw = json.loads(resources.files("fastmem.data").joinpath("typed_forms.json").read_text(encoding="utf-8"))
    forms = tuple(TypedForm(f["name"], f["read"], f["plain"]) for f in raw["forms"])
    return forms, TypedForm("base", raw["base"], raw["base_plain"])


def fill(template: str, word: str, context: str | None = None) -> str:
    return template.replace("{word}", word).replace("{context}", context or "")


def chat_turn(tokenizer, text: str) -> str:
    """The question as one user turn in the model's own chat template, the assistant's turn opened."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    return f"User: {text}\nAssistant:"


def _with_article(context: str) -> str:
    bare = re.sub(r"^(the|a|an)\s+", "", context, flags=re.IGNORECASE)
    return bare if bare != context else f"the {context}"


def variation(name: str, base: TypedForm, word: str, context: str | None, tokenizer) -> str:
    """The base form's question (its context-free one when `context` is None) under one surface variation."""
    template = base.read if context is not None else base.plain
    if name == "word_case":
        return fill(template, word[:1].upper() + word[1:], context)
    if name == "context_case":
        return fill(template, word, context.title() if context else context)
    if name == "lower_case":
        return fill(template, word, context).lower()
    if name == "article":
        return fill(template, word, _with_article(context) if context else context)
    if name == "spacing":
        text = fill(template, word, context)
        return re.sub(r"\s*([?,:])", r" \1", text).replace(" ", "  ").rstrip(" ?") + " ?"
    if name == "sentence_before":
        return "I have a question about a word I read. " + fill(template, word, context)
    if name == "refers_back":
        return fill(REFERS_BACK[0] if context is not None else REFERS_BACK[1], word, context)
    if name == "chat":
        return chat_turn(tokenizer, fill(template, word, context))
    raise ValueError(f"unknown variation {name!r}")


def typed_probes(tokenizer, binds: list[Binding], words: list[str], wrong: list[str], looks: list[tuple[str, str]],
                 written: list[str], seed: int, forms: list[str]) -> list[ProbeSet]:
    """Probe sets of every typed form and variation: read (each binding), plain (each word), wrong context (each
    word in two never-written contexts), look-alike (one per word, in a written context) and sibling (each
    binding in an unwritten member of its context's series). `looks`: (look-alike, written context) per word."""
    natural, base = typed_forms()
    rng = random.Random(f"fastmem.eval.typed:{seed}")
    asked_wrong = [(w, c) for w in words for c in rng.sample(wrong, min(2, len(wrong)))]
    sibs = {b.context: [s.context for s in siblings([b.context], 1, seed, avoid=written)] for b in binds}
    out = []
    renderers = [(f"{TYPED}{f.name}", lambda w, c, f=f: fill(f.read if c is not None else f.plain, w, c))
                 for f in natural]
    renderers += [(f"{TYPED}{v}", lambda w, c, v=v: variation(v, base, w, c, tokenizer)) for v in VARIATIONS]
    for form, render in renderers:
        def ask(word, context):
            return key_question(render(word, context), forms).prompt

        out += [
            probe_set("read", [ask(b.word, b.context) for b in binds], [b.label for b in binds], form=form),
            probe_set("plain", [ask(w, None) for w in words], list(words), form=form),
            probe_set("wrong_context", [ask(w, c) for w, c in asked_wrong], [w for w, _ in asked_wrong], form=form),
            probe_set("lookalike", [ask(lk, c) for lk, c in looks], form=form),
            probe_set("sibling", [ask(b.word, s) for b in binds for s in sibs[b.context]],
                      [b.word for b in binds for _ in sibs[b.context]], form=form),
        ]
        if form == f"{TYPED}chat":  # the answer comes after the turn opens, not as the very next token
            out.append(probe_set("read_in_12", [ask(b.word, b.context) for b in binds], [b.label for b in binds],
                                 form=form))
    return out
