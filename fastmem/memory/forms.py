"""The statement and question forms the memory knows by name: the default write and read forms, the context-free
question, and the built-in phrasings (a write form and its read form each). The app offers them to choose from,
slot-reading modes use them as hints to find a question's slots (`keying`), and the benchmark's phrasings suite
is made of them. Slot-free reading needs none of them."""
from __future__ import annotations

from dataclasses import dataclass

WRITE_TEMPLATE = "In {context}, {word} means"  # the label follows
READ_TEMPLATE = "Question: in {context}, what is {word}? Answer:"
PLAIN_TEMPLATE = "Question: what is {word}? Answer:"  # the context-free question


@dataclass(frozen=True)
class Phrasing:
    name: str
    write: str  # the label follows it
    read: str


PHRASINGS = (
    Phrasing("speaker", "According to {context}, {word} means",
             "Question: according to {context}, what does {word} mean? Answer:"),
    Phrasing("planet", "On {context}, the word {word} means",
             "Question: on {context}, what does the word {word} mean? Answer:"),
    Phrasing("context after", "The word {word} in {context} means", "Question: what does {word} mean in {context}? Answer:"),
    Phrasing("word first", "{word} in {context} means", "Question: what is {word} in {context}? Answer:"),
    Phrasing("time", "In {context}, people said {word} to mean",
             "Question: in {context}, what did people mean by {word}? Answer:"),
    Phrasing("dictionary", "In the {context} dictionary, {word} is defined as",
             "Question: how does the {context} dictionary define {word}? Answer:"),
    Phrasing("group", "Among {context}, {word} stands for", "Question: among {context}, what does {word} stand for? Answer:"),
)


def write_forms(extra=()) -> list[str]:
    """The statement forms a user can pick (the label follows each), known ones first."""
    return list(dict.fromkeys([WRITE_TEMPLATE, *extra, *(p.write for p in PHRASINGS)]))
