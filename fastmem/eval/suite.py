"""Suites: words, labels, contexts with their own templates, unrelated questions, train/test split.

The built-in suite (`fastmem/data/builtin_suite.json`) is itself a suite file, made by
`make_builtin_suite()`; a user's JSON or YAML file has the same schema (see README).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fastmem.errors import BindingError, SuiteError
from fastmem.eval.probes import TRAIN_UNSEEN_CONTEXTS, UNSEEN_CONTEXTS
from fastmem.memory import forms
from fastmem.memory.forms import READ_TEMPLATE
from fastmem.memory.prompts import SlottedPrompt, render, template_fields, unrelated_prompt

SUITE_FILES = {"builtin": "builtin_suite.json", "multitoken": "multitoken_suite.json",
               "phrasings": "phrasings_suite.json", "nonce-colour": "nonce_colour_suite.json",
               "real-words": "real_words_suite.json", "series": "series_suite.json"}  # built-in suites, by name
MAX_SUITE_BYTES = 5 * 1024 * 1024
MAX_SUITE_NODES = 200_000  # values after YAML aliases are expanded (guards against "billion laughs")
MAX_SUITE_DEPTH = 32


class WordSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    word: str = Field(min_length=1, max_length=64)
    labels: list[str] = Field(min_length=2, max_length=2)  # label in the experiment's 1st and 2nd context
    split: Literal["train", "test"]

    @field_validator("word", "labels")
    @classmethod
    def _strip(cls, v):
        items = [v] if isinstance(v, str) else v
        if any(not s.strip() or s != s.strip() for s in items):
            raise ValueError("must be non-blank without leading/trailing spaces")
        return v


class ExperimentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    contexts: list[str] = Field(min_length=2, max_length=2)
    write: str  # e.g. "In {context}, {word} means" (the label follows)
    read: str  # e.g. "Question: in {context}, what is {word}? Answer:"
    train: bool = False  # the key projector and the calibration use this experiment's training words

    @field_validator("write", "read")
    @classmethod
    def _template(cls, v):
        try:
            names = template_fields(v)
        except BindingError as exc:
            raise ValueError(str(exc)) from None
        if "context" not in names:
            raise ValueError("must contain {context}")
        return v


class ParaphraseSpec(BaseModel):
    """A question form the calibration never sees, read against every experiment's bindings."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9_]+$")
    read: str  # e.g. "Question: what does {word} mean in {context}? Answer:"

    @field_validator("read")
    @classmethod
    def _template(cls, v):
        return ExperimentSpec._template(v)


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "suite"
    plain: str = "Question: what is {word}? Answer:"  # context-free question
    unrelated: list[str] = Field(min_length=1)  # scored on test
    train_unrelated: list[str] = Field(default_factory=list)  # negatives for training/calibration
    words: list[WordSpec] = Field(min_length=1)
    experiments: list[ExperimentSpec] = Field(min_length=1)
    paraphrases: list[ParaphraseSpec] = Field(default_factory=list)
    unseen_contexts: list[str] = Field(default_factory=lambda: list(UNSEEN_CONTEXTS))  # benchmark only
    train_unseen_contexts: list[str] = Field(default_factory=lambda: list(TRAIN_UNSEEN_CONTEXTS))  # calibration

    @field_validator("plain")
    @classmethod
    def _plain(cls, v):
        try:
            names = template_fields(v)
        except BindingError as exc:
            raise ValueError(str(exc)) from None
        if "context" in names:
            raise ValueError("the plain question must not contain {context}")
        return v

    @model_validator(mode="after")
    def _check(self):
        seen = [w.word for w in self.words]
        dupes = sorted({w for w in seen if seen.count(w) > 1})
        if dupes:
            raise ValueError(f"words listed twice: {dupes[:5]}")
        names = [e.name for e in self.experiments]
        if len(set(names)) != len(names):
            raise ValueError("experiment names must be unique")
        for q in self.unrelated + self.train_unrelated:
            unrelated_prompt(q)  # raises BindingError (a ValueError would be nicer) when no word
        written = {c for e in self.experiments for c in e.contexts}
        if written & set(self.unseen_contexts + self.train_unseen_contexts):
            raise ValueError(f"unseen contexts must not be written contexts: {sorted(written & set(self.unseen_contexts + self.train_unseen_contexts))}")
        if set(self.unseen_contexts) & set(self.train_unseen_contexts):
            raise ValueError("unseen_contexts (test) and train_unseen_contexts (calibration) must be disjoint")
        if len({p.name for p in self.paraphrases}) != len(self.paraphrases):
            raise ValueError("paraphrase names must be unique")
        return self

    def split(self, split: str) -> list[WordSpec]:
        return [w for w in self.words if w.split == split]

    def experiment(self, name: str) -> ExperimentSpec:
        for e in self.experiments:
            if e.name == name:
                return e
        raise SuiteError(f"No experiment named {name!r}; this suite has {[e.name for e in self.experiments]}.")

    def question_forms(self) -> list[str]:
        """The forms keying tries for a typed question (`memory.keying`), in order: this suite's read forms and
        paraphrases, the built-in phrasings (`memory.forms`), the context-free question, the default read form."""
        return list(dict.fromkeys([e.read for e in self.experiments] + [p.read for p in self.paraphrases]
                                  + [p.read for p in forms.PHRASINGS] + [self.plain, READ_TEMPLATE]))

    @property
    def train_experiments(self) -> list[ExperimentSpec]:
        return [e for e in self.experiments if e.train] or self.experiments[:1]


@dataclass(frozen=True)
class Binding:
    word: str
    context: str
    label: str
    write: SlottedPrompt  # the write statement's prefix; the label is the next token
    read: SlottedPrompt


def bindings(experiment: ExperimentSpec, words: list[WordSpec]) -> list[Binding]:
    return [Binding(w.word, ctx, w.labels[i], render(experiment.write, w.word, ctx),
                    render(experiment.read, w.word, ctx))
            for w in words for i, ctx in enumerate(experiment.contexts)]


def load_suite(source: str | Path | bytes | None = None) -> Suite:
    """Parse a suite from a path, raw bytes (JSON or YAML), a built-in suite's name (SUITE_FILES), or the
    default built-in one when None."""
    if source is None or isinstance(source, str) and source in SUITE_FILES and not Path(source).exists():
        data = resources.files("fastmem.data").joinpath(SUITE_FILES[source or "builtin"]).read_bytes()
    elif isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif not isinstance(source, str | Path):
        raise SuiteError(f"A suite is a file path or the file's bytes, not {type(source).__name__}.")
    else:
        path = Path(source)
        if not path.is_file():
            raise SuiteError(f"Suite file not found: {path}")
        if path.stat().st_size > MAX_SUITE_BYTES:
            raise SuiteError(f"Suite file is over {MAX_SUITE_BYTES // 2**20} MiB.")
        data = path.read_bytes()
    if len(data) > MAX_SUITE_BYTES:
        raise SuiteError(f"Suite file is over {MAX_SUITE_BYTES // 2**20} MiB.")
    try:
        text = data.decode("utf-8")
        try:  # JSON first: the C parser is ~100x faster than PyYAML's (YAML is a superset of JSON)
            raw = json.loads(text)
        except ValueError:
            raw = yaml.safe_load(text)
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SuiteError(f"The suite file is neither JSON nor YAML: {first}") from exc
    except RecursionError:
        raise SuiteError("The suite file is nested too deeply to be a suite.") from None
    if not isinstance(raw, dict):
        raise SuiteError("The suite file must hold a mapping (a JSON object) at the top level.")
    _check_size(raw)
    try:
        return Suite.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'suite'}: {e['msg']}" for e in exc.errors()[:5])
        raise SuiteError(f"The suite file is not valid: {problems}") from None
    except BindingError as exc:
        raise SuiteError(f"The suite file is not valid: {exc}") from None
    except RecursionError:
        raise SuiteError("The suite file is not valid: it is nested too deeply.") from None


def _check_size(raw) -> None:
    """Reject documents that are too deep or that expand (through YAML aliases) to too many values."""
    budget = MAX_SUITE_NODES
    stack = [(raw, 0)]
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise SuiteError(f"The suite file is too large: over {MAX_SUITE_NODES:,} values "
                             "(YAML aliases count once per use).")
        if depth > MAX_SUITE_DEPTH:
            raise SuiteError(f"The suite file is nested more than {MAX_SUITE_DEPTH} levels deep.")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for kv in node.items() for v in kv)
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


# -- the built-in suite -------------------------------------------------------------------------
LABELS = ("red blue green black white yellow pink brown cat dog fish bird horse cow lion bear "
          "apple bread milk stone tree sun moon star fire water snow king boat car book cup").split()
UNRELATED = [
    "Question: what is the capital of France? Answer:", "Question: what color is the sky? Answer:",
    "Question: what is two plus two? Answer:", "Question: what animal says meow? Answer:",
    "Question: what do bees make? Answer:", "Question: what is frozen water called? Answer:",
    "Question: what is the opposite of hot? Answer:", "Question: what do cows drink? Answer:",
    "Question: what planet do we live on? Answer:", "Question: what is the color of grass? Answer:",
    "Question: what is the largest ocean? Answer:", "Question: who wrote Hamlet? Answer:",
    "Question: what language is spoken in Spain? Answer:", "Question: how many legs does a spider have? Answer:",
    "Question: what is the boiling point of water? Answer:", "Question: what gas do plants breathe in? Answer:",
    "Question: what is the capital of Japan? Answer:", "Question: what fruit is yellow and long? Answer:",
    "Question: what do you use to write on paper? Answer:", "Question: what is the first letter of the alphabet? Answer:",
    "Question: what is the color of snow? Answer:", "Question: what animal barks? Answer:",
    "Question: what is the sum of one and one? Answer:", "Question: what do fish live in? Answer:",
    "Question: what season comes after winter? Answer:", "Question: which star is closest to Earth? Answer:",
    "Question: what is the capital of Italy? Answer:", "Question: what metal is shiny and yellow? Answer:",
    "Question: what do we call a baby cat? Answer:", "Question: what is the day after Monday? Answer:",
    "Question: what is the main ingredient of bread? Answer:", "Question: what is the color of a ripe banana? Answer:",
]
TRAIN_UNRELATED = [
    "Question: what is the capital of Germany? Answer:", "Question: what color is a lemon? Answer:",
    "Question: what is three plus four? Answer:", "Question: what animal says moo? Answer:",
    "Question: what do spiders spin? Answer:", "Question: what is the opposite of up? Answer:",
    "Question: what is the tallest animal? Answer:", "Question: who painted the Mona Lisa? Answer:",
    "Question: what language is spoken in Brazil? Answer:", "Question: how many days are in a week? Answer:",
    "Question: what is the capital of Spain? Answer:", "Question: what do birds lay? Answer:",
    "Question: what is the color of blood? Answer:", "Question: what animal has a trunk? Answer:",
    "Question: what do people drink in the morning? Answer:", "Question: what shape is a ball? Answer:",
    "Question: what is the month after June? Answer:", "Question: what do we breathe? Answer:",
    "Question: what is the capital of England? Answer:", "Question: what color is coal? Answer:",
    "Question: what animal hops? Answer:", "Question: what is ten minus three? Answer:",
    "Question: what do bakers make? Answer:", "Question: what is the fastest land animal? Answer:",
    "Question: what falls from clouds? Answer:", "Question: what is the color of the sea? Answer:",
    "Question: what do cats chase? Answer:", "Question: what is the capital of Russia? Answer:",
    "Question: what instrument has keys? Answer:", "Question: what season is the coldest? Answer:",
]
# Question forms calibration never sees: the context after the word, a completion, other wordings.
PARAPHRASES = [
    ("context_after", "Question: what does {word} mean in {context}? Answer:"),
    ("completion", "In {context}, the meaning of {word} is"),
    ("short_qa", "Q: In {context}, what does {word} mean? A:"),
    ("word_first", "The word {word} in {context} means"),
]
EXPERIMENTS = [
    ("same game A/B", ["game A", "game B"], True),
    ("new game C/D", ["game C", "game D"], False),
    ("new lab north/south", ["the north lab", "the south lab"], False),
]


def nonce_words(n: int, seed: int) -> list[str]:
    """Pronounceable invented words such as 'blicket', 'dax', 'toma'."""
    rng = random.Random(seed)
    onsets = ["b", "bl", "br", "d", "dr", "f", "fl", "g", "gl", "gr", "k", "kl", "m", "n", "p", "pl", "pr",
              "s", "sk", "sl", "sn", "st", "t", "tr", "v", "z", "w", "j"]
    vowels = ["a", "e", "i", "o", "u", "oo", "ai", "ee"]
    codas = ["", "", "b", "ck", "d", "f", "g", "k", "l", "m", "n", "p", "sh", "t", "x", "zz", "nd", "rt"]
    words: list[str] = []
    while len(words) < n:
        syllables = rng.choice([2, 2, 3])
        w = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(syllables - 1))
        w += rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
        if 4 <= len(w) <= 10 and w not in words:
            words.append(w)
    return words


def make_builtin_suite(n_train: int = 128, n_test: int = 64, seed: int = 0) -> Suite:
    rng = random.Random(seed + 1)
    words = []
    for i, w in enumerate(nonce_words(n_train + n_test, seed)):
        first, second = rng.sample(LABELS, 2)
        words.append(WordSpec(word=w, labels=[first, second], split="train" if i < n_train else "test"))
    experiments = [ExperimentSpec(name=name, contexts=ctx, write="In {context}, {word} means",
                                  read="Question: in {context}, what is {word}? Answer:", train=train)
                   for name, ctx, train in EXPERIMENTS]
    return Suite(name="builtin", unrelated=UNRELATED, train_unrelated=TRAIN_UNRELATED, words=words,
                 experiments=experiments, paraphrases=[ParaphraseSpec(name=n, read=r) for n, r in PARAPHRASES])


def suite_json(suite: Suite) -> str:
    return json.dumps(suite.model_dump(), indent=1, ensure_ascii=False) + "\n"
