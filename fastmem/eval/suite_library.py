"""Built-in suites beyond the default one, shipped as suite files in `fastmem/data/` and loaded by name
(`load_suite("multitoken")`, `python -m fastmem bench --suite multitoken`).

Each keeps the default suite's training side unchanged (training words, training experiments, training
negatives), so the default calibration serves it and its figures compare with the default table; only the
test words' labels change. `python scripts/make_suites.py` regenerates the files.
"""
from __future__ import annotations

import random
from importlib import resources

from fastmem.eval.suite import LABELS, SUITE_FILES, ExperimentSpec, Suite, WordSpec
from fastmem.memory.forms import PHRASINGS

# Labels of several words; their token counts depend on the tokenizer and are measured when the file is made.
PHRASES = [
    "guinea pig", "ice cream", "dark green", "hot dog", "fire truck", "olive oil", "sea lion", "polar bear",
    "light blue", "bright red", "apple pie", "green tea", "black coffee", "paper boat", "silver spoon",
    "golden key", "red wine", "blue whale", "brown bear", "white rabbit", "snow globe", "pine tree",
    "swimming pool", "video game", "traffic light", "music box", "tennis ball", "chocolate cake", "orange juice",
    "peanut butter", "post office", "fish tank", "bus stop", "train station", "lemon tree", "pale yellow",
    "deep purple", "sky blue", "red fox", "grey wolf", "wild horse", "green apple", "sweet cherry", "blue cheese",
    "brown sugar", "maple syrup", "warm milk", "fast train", "small mouse", "round table",
    "hot air balloon", "peanut butter sandwich", "little green frog", "old wooden chair", "tiny silver bell",
    "strawberry ice cream", "dark chocolate cake", "fresh orange juice", "small paper boat", "yellow rubber duck",
    "warm apple pie", "bright blue sky", "a red balloon", "the green door", "a wooden spoon", "a paper crane",
    "a quiet garden", "a rainy day", "the north star", "a golden ring", "a black cat", "a white horse",
    "the red planet", "a blue bird", "an old map", "a broken clock", "a silver coin",
    "a hot air balloon", "a little green frog", "an old wooden chair", "a tiny silver bell",
    "a yellow rubber duck", "the bright blue sky", "a warm apple pie", "a dark chocolate cake",
    "a cup of tea", "a glass of milk", "a slice of bread", "a bowl of soup", "a piece of cake",
    "the old stone bridge", "a small paper boat", "a fresh orange juice", "a big red fire truck",
]
# Contexts for each built-in phrasing (`forms.PHRASINGS`): the phrasings suite writes and reads each in its own.
PHRASING_CONTEXTS = {
    "speaker": ["Mia", "Leo"], "planet": ["planet Zog", "planet Vex"], "context after": ["game A", "game B"],
    "word first": ["the north lab", "the south lab"], "time": ["the year 1850", "the year 2300"],
    "dictionary": ["Elvish", "Martian"], "group": ["the sailors", "the miners"],
}
LENGTHS = (1, 2, 3, 4)  # label lengths in tokens, an equal share of the test words each


def suite_path(name: str):
    """Where a built-in suite's file lives in the package (for scripts/make_suites.py)."""
    return resources.files("fastmem.data").joinpath(SUITE_FILES[name])


def labels_by_length(tokenizer, lengths=LENGTHS) -> dict[int, list[str]]:
    """Candidate labels (the default one-word labels and PHRASES) grouped by their token count."""
    out: dict[int, list[str]] = {n: [] for n in lengths}
    for label in dict.fromkeys(list(LABELS) + PHRASES):
        n = len(tokenizer(" " + label, add_special_tokens=False)["input_ids"])
        if n in out:
            out[n].append(label)
    return out


def make_multitoken_suite(base: Suite, tokenizer, seed: int = 0) -> Suite:
    """The default suite with each test word's two labels replaced by two labels of 1, 2, 3 or 4 tokens
    (the same count for both, so `plain` is scored per length too), an equal share of words per length."""
    pools = labels_by_length(tokenizer)
    short = [n for n, pool in pools.items() if len(pool) < 2]
    if short:
        raise ValueError(f"this tokenizer leaves fewer than two candidate labels of {short} tokens")
    rng = random.Random(seed + 7)
    test = base.split("test")
    words = []
    for i, w in enumerate(test):
        n = LENGTHS[i * len(LENGTHS) // len(test)]
        words.append(WordSpec(word=w.word, labels=rng.sample(pools[n], 2), split="test"))
    return base.model_copy(update={"name": "multitoken", "words": base.split("train") + words})


def make_phrasings_suite(base: Suite) -> Suite:
    """The default suite's words (and its training experiment, so the default calibration serves it) with
    one test experiment per phrasing in PHRASINGS, each written and read in its own forms."""
    experiments = list(base.train_experiments) + [
        ExperimentSpec(name=f"phrasing: {p.name}", contexts=PHRASING_CONTEXTS[p.name], write=p.write, read=p.read)
        for p in PHRASINGS]
    return base.model_copy(update={"name": "phrasings", "experiments": experiments})


# Nonce words in the style of instruction-learning studies (dax, wif, lug, zup), bound to colours only.
NONCE = ("dax wif lug zup fep kiki tufa gazzer blick mip tove gorp zav nim pilk tuv wug toma dupe koba "
         "lorp sib vek jat mell pog rif taz yub zorp quan fim").split()
COLOURS = ("red blue green yellow black white pink brown orange purple grey gold silver violet").split()
# Real words given new meanings: the model's prior for the word fights the memory.
REAL_WORDS = ("apple river chair window garden doctor mountain pencil bottle candle forest engine ladder "
              "blanket bridge castle button rocket basket mirror tunnel island jacket kettle pillow wallet "
              "hammer lemon violin camera anchor helmet").split()


def _relabelled(base: Suite, name: str, words: list[str], labels: list[str], seed: int) -> Suite:
    """The default suite's training side with `words` as the test words, each with two labels drawn from
    `labels` (different ones for its two contexts)."""
    rng = random.Random(seed + 11)
    train = base.split("train")
    taken = {w.word for w in train}
    test = [WordSpec(word=w, labels=rng.sample(labels, 2), split="test") for w in words if w not in taken]
    return base.model_copy(update={"name": name, "words": train + test})


def make_nonce_colour_suite(base: Suite, seed: int = 0) -> Suite:
    """Nonce words (dax, wif, lug, zup, ...) bound to colours: the classic instruction-learning setup."""
    return _relabelled(base, "nonce-colour", list(NONCE), list(COLOURS), seed)


def make_real_words_suite(base: Suite, seed: int = 0) -> Suite:
    """Everyday words given new meanings (`In game A, apple means blue`): the prior fights the memory."""
    return _relabelled(base, "real-words", list(REAL_WORDS), list(LABELS), seed)


# Context series whose members differ in one part (`fastmem.series` makes their unwritten siblings), each read
# and written in a phrasing that suits it: (name, contexts, write form, read form).
SERIES_EXPERIMENTS = [
    ("series: level", ["level 1", "level 2"], "In {context}, {word} means",
     "Question: in {context}, what is {word}? Answer:"),
    ("series: room", ["room 101", "room 102"], "In {context}, {word} means",
     "Question: in {context}, what is {word}? Answer:"),
    ("series: weekday", ["Monday", "Tuesday"], "On {context}, {word} means",
     "Question: on {context}, what is {word}? Answer:"),
    ("series: team", ["the red team", "the blue team"], "For {context}, {word} means",
     "Question: for {context}, what is {word}? Answer:"),
    ("series: chapter", ["chapter one", "chapter two"], "In {context}, {word} means",
     "Question: in {context}, what is {word}? Answer:"),
    ("series: floor", ["the first floor", "the second floor"], "On {context}, {word} means",
     "Question: on {context}, what is {word}? Answer:"),
    ("series: month", ["March", "April"], "In {context}, {word} means",
     "Question: in {context}, what is {word}? Answer:"),
]


def digit_words(n: int, seed: int) -> list[str]:
    """Invented words with two different digits inside (`zq56x`): their look-alikes differ in one digit or in the
    order of the two."""
    rng = random.Random(seed + 13)
    letters = "bcdfghjklmnpqrstvwxz"
    out: list[str] = []
    while len(out) < n:
        a, b = rng.sample("0123456789", 2)
        w = rng.choice(letters) + rng.choice(letters) + a + b + rng.choice(letters)
        if w not in out:
            out.append(w)
    return out


def make_series_suite(base: Suite, seed: int = 0) -> Suite:
    """The default suite's training side with one test experiment per context series, and test words half
    pronounceable, half with digits (`zq56x`)."""
    rng = random.Random(seed + 17)
    test = base.split("test")[:32]
    words = [WordSpec(word=w, labels=rng.sample(list(LABELS), 2), split="test") for w in digit_words(32, seed)]
    experiments = list(base.train_experiments) + [
        ExperimentSpec(name=name, contexts=contexts, write=write, read=read)
        for name, contexts, write, read in SERIES_EXPERIMENTS]
    unseen = [c for c in base.unseen_contexts if c not in {c for _, cs, _, _ in SERIES_EXPERIMENTS for c in cs}]
    return base.model_copy(update={"name": "series", "words": base.split("train") + test + words,
                                   "experiments": experiments, "unseen_contexts": unseen})
