"""Preset scenarios for demos: a few bindings, the questions worth asking, and what to look for.

Each preset is plain data (frozen dataclasses); `Lab.load_preset` writes one into a memory and
`Lab.preset_questions` turns its suggested questions into prompts. Questions are (word, context) pairs
rendered with the lab's own question template, so they always match the model's question form; a
question without a context is the context-free form (`Question: what is blicket? Answer:`).
"""
from __future__ import annotations

from dataclasses import dataclass

from fastmem.errors import SettingsError


@dataclass(frozen=True)
class Suggested:
    word: str
    context: str | None  # None: the context-free question
    expect: str  # the label the memory should give, or "" when the memory should stay silent
    note: str  # what the user should see, in one sentence


@dataclass(frozen=True)
class Preset:
    key: str
    title: str
    description: str
    rows: tuple[tuple[str, str, str], ...]  # (word, context, label)
    questions: tuple[Suggested, ...]


BLICKET = Preset(
    key="blicket",
    title="The post's blicket example",
    description="One invented word, two meanings: blicket is red in game A and blue in game B. "
                "Retrieval keeps the contexts apart.",
    rows=(("blicket", "game A", "red"), ("blicket", "game B", "blue")),
    questions=(
        Suggested("blicket", "game A", "red", "The game A entry is retrieved: the answer is red."),
        Suggested("blicket", "game B", "blue", "Same word, other context: the game B entry, blue."),
    ),
)

CONFLICTS = Preset(
    key="conflicts",
    title="Conflicting contexts",
    description="Three invented words, each bound to a different label in game A and in game B: six entries "
                "that only the context tells apart.",
    rows=(("dax", "game A", "red"), ("dax", "game B", "blue"),
          ("wug", "game A", "green"), ("wug", "game B", "yellow"),
          ("toma", "game A", "cat"), ("toma", "game B", "fish")),
    questions=(
        Suggested("dax", "game A", "red", "dax in game A: red, not game B's blue."),
        Suggested("dax", "game B", "blue", "dax in game B: blue."),
        Suggested("wug", "game B", "yellow", "wug in game B: yellow, not game A's green."),
        Suggested("toma", "game A", "cat", "toma in game A: cat, not game B's fish."),
    ),
)

FAILURES = Preset(
    key="failures",
    title="Failure gallery",
    description="When the memory should stay silent. blicket is written in game A and game B only. A look-alike "
                "word, a context that was never written and a question without a context should all be left to the "
                "plain model; the reason under the answer says why the memory did or did not step in.",
    rows=(("blicket", "game A", "red"), ("blicket", "game B", "blue")),
    questions=(
        Suggested("blicket", "game A", "red", "Control: the written binding is answered (red)."),
        Suggested("flicket", "game A", "", "A look-alike word that was never written: nothing should be injected."),
        Suggested("blicket", "game Z", "", "The written word in a context that was never written (game Z): "
                                           "nothing should be injected."),
        Suggested("blicket", None, "", "No context at all: the memory cannot know which blicket is meant."),
    ),
)

PRESETS: dict[str, Preset] = {p.key: p for p in (BLICKET, CONFLICTS, FAILURES)}


def get_preset(key: str | Preset) -> Preset:
    if isinstance(key, Preset):
        return key
    if key not in PRESETS:
        raise SettingsError(f"Unknown preset {key!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[key]


__all__ = ["Preset", "Suggested", "PRESETS", "BLICKET", "CONFLICTS", "FAILURES", "get_preset"]
