"""Hard negative probes for the selectivity benchmark: the memory must stay silent on them.

Three kinds: (a) look-alike words that were never written (same last sub-tokens, same first
sub-token, or one letter changed), (b) contexts that were never written, and (c) ordinary fact
prompts that the plain model already answers right (locality: the memory must not break them).
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Iterable

LOOKALIKE_KINDS = ("same_end", "same_start", "one_letter")
FACT_FORMS = ("completion", "question")
_TRIES = 400  # candidates per kind and path; pieces are random, so a few hundred always suffice in practice
_WORD = re.compile(r"[a-z]{3,12}")

# Small pronounceable pieces (own lists, so the probes do not move when the suite's generator changes).
_ONSETS = ("b bl br d dr f fl fr g gl gr k kl kr m n p pl pr s sk sl sn sp st t tr v z w j ch sh th "
           "h l r").split()
_VOWELS = "a e i o u oo ai ee ou".split()
_CODAS = "b ck d f g k l m n p sh t x zz nd rt nk sk mp".split()
_LETTER_VOWELS = "aeiou"
_LETTER_CONSONANTS = "bcdfghjklmnprstvwz"  # no q, x, y: they rarely keep a word pronounceable

# Common short English words: a look-alike that is a real word would test the model's knowledge of
# that word, not the memory's selectivity.
STOP_WORDS = frozenset("""
a about above act add after again age ago air all also am an and any are arm art as ask at away baby back
bad bag ball band bank bar base bat bath be bear beat bed bee been beer before bell belt best bet big bike
bill bird bit bite black blade blind block blood blow blue boat body bone book boot born boss both bowl box
boy brain bread break bring brown buck bug build bull bump bun burn bus busy but buy by cake call came camp
can cap car card care case cash cat catch chain chair chip clan clock club coal coat cold come cook cool cop
cost cow crab crew cry cup cut dad dark date day dead deal dear deck deep deer desk did die dig dish do dock
doe dog doll done door dot down draw dream dress drink drive drop drum dry duck dust each ear east eat egg
end eye face fact fail fair fall fan far farm fast fat fear feed feel feet fell felt few file fill find fine
fire fish fit five flag flat flip floor flow fly fog fold food foot for fork form four fox free frog from
fun game gap gas gate get gift girl give glad go goat god gold golf gone good got grab gray green grip grow
gum gun guy had hair half hall hand hang hard has hat hate have he head hear heat held hell help her here
hid high hill him hip his hit hold hole home hood hook hop hope horn horse host hot hour how hug hunt hurt
ice if ill in into is it its jab jam jar jet job jog join joke jump just keen keep kept key kick kid kill
kind king kiss kit knee know lab lake lamp land lane last late lay lead leaf left leg less let lid lie life
lift light like line link lip list live load lock log long look lord lose lost lot loud love low luck mad
made mail main make male man many map mark mat may me meal mean meat meet men mess mild milk mind mine miss
mix mob mock mole mom moon more most move much mud mug must my nail name near neck need nest net new news
next nice night nine no nod none noon nor nose not note now nut oak odd of off oil old on one only open or
our out owl own pack pad page paid pain pair pal pan park part pass past pat path pay pea peak pen pet pick
pie pig pin pink pipe pit plan play plot plug plus pod pool poor pop pot pour pull pump push put rag rain
ran rat raw red rest rib rice rich ride ring rip rise road rob rock rod role roll roof room root rope rose
rot row rub rug rule run rush sad safe said sail salt same sand sat save saw say sea seat see seed seen
sell send set shed ship shoe shop shot show shut sick side sign sin sing sink sip sit six size skin sky
slid slip slow snap snow so sock soft soil sold some son song soon sort soup spin spot star stay step stop
sun sure swim tab tag tail take talk tall tan tank tap tar task tea team tell ten tent test than that the
them then they thin this tie till time tin tip to toe told tom ton too took top toy trap tree trip true tub
tug turn two up us use van vet view vote wag wait wake walk wall want war warm was wash wax way we web wed
week well went were west wet what when who why wig will win wind wine wing wise wish with wolf wood word
wore work yard yes yet you zip zoo
""".split())


@dataclass(frozen=True)
class Lookalike:
    word: str  # the unwritten look-alike
    source: str  # the written word it resembles
    kind: str  # "same_end" | "same_start" | "one_letter"


def _ids(tokenizer, word: str) -> list[int]:
    # Words follow a space in every prompt, so that is how they are tokenized.
    return list(tokenizer(" " + word, add_special_tokens=False)["input_ids"])


def _first_piece(tokenizer, word: str, ids: list[int]) -> str | None:
    """The text of the word's first token, when it is a proper prefix of the word (else None)."""
    if len(ids) < 2:
        return None
    head = tokenizer.decode([ids[0]]).strip().lower()
    return head if head and word.startswith(head) and len(head) < len(word) else None


def _syllables(rng: random.Random, n: int) -> str:
    out = ""
    while len(out) < n:
        out += rng.choice(_ONSETS) + rng.choice(_VOWELS)
    return out


def _beginning(rng: random.Random, tail: str, n: int) -> str:
    """A new pronounceable start of about n letters that joins smoothly onto `tail`."""
    n = max(1, n + rng.randint(-1, 1))  # about as long as the part it replaces: a close look-alike
    if tail[0] in _LETTER_VOWELS:
        return _syllables(rng, n - 1) + rng.choice(_ONSETS)
    return _syllables(rng, n)


def _ending(rng: random.Random, head: str, n: int) -> str:
    """A new pronounceable ending of about n letters that joins smoothly onto `head`."""
    n = max(1, n + rng.randint(-1, 1))
    start = rng.choice(_VOWELS) if head[-1] not in _LETTER_VOWELS else ""
    end = start + _syllables(rng, n - len(start) - 1)
    return end + rng.choice(_CODAS + [""] if end else _CODAS)  # never empty


def _close(cand: str, word: str) -> bool:
    return abs(len(cand) - len(word)) <= 2  # a look-alike is about as long as its source


def _same_end(tokenizer, word, ids, rng, ok):
    head = _first_piece(tokenizer, word, ids)
    if head is not None:  # sub-token path: keep every token after the first, verified by re-tokenizing
        tail, tail_ids = word[len(head):], ids[1:]
        for _ in range(_TRIES):
            cand = _beginning(rng, tail, len(word) - len(tail)) + tail
            got = _ids(tokenizer, cand)
            if (len(got) > len(tail_ids) and got[-len(tail_ids):] == tail_ids and got[0] != ids[0]
                    and _close(cand, word) and ok(cand)):
                return cand
    tail = word[-4:] if len(word) > 4 else word[1:]  # string fallback (single-token words, or nothing verified)
    for _ in range(_TRIES):
        cand = _beginning(rng, tail, len(word) - len(tail)) + tail
        if cand[:-len(tail)] != word[:-len(tail)] and _close(cand, word) and ok(cand):
            return cand
    return None


def _same_start(tokenizer, word, ids, rng, ok):
    head = _first_piece(tokenizer, word, ids)
    if head is not None:
        for _ in range(_TRIES):
            cand = head + _ending(rng, head, len(word) - len(head))
            got = _ids(tokenizer, cand)
            if len(got) >= 2 and got[0] == ids[0] and got[-1] != ids[-1] and _close(cand, word) and ok(cand):
                return cand
    head = word[:3]
    for _ in range(_TRIES):
        cand = head + _ending(rng, head, len(word) - len(head))
        if cand[3:] != word[3:] and _close(cand, word) and ok(cand):
            return cand
    return None


def _one_letter(word, rng, ok):
    positions = list(range(len(word)))
    rng.shuffle(positions)
    for i in positions:  # a vowel for a vowel, a consonant for a consonant: it stays pronounceable
        pool = _LETTER_VOWELS if word[i] in _LETTER_VOWELS else _LETTER_CONSONANTS
        letters = [c for c in pool if c != word[i]]
        rng.shuffle(letters)
        for c in letters:
            cand = word[:i] + c + word[i + 1:]
            if ok(cand):
                return cand
    return None


def lookalikes(tokenizer, words: list[str], seed: int, avoid: Iterable[str] = ()) -> list[Lookalike]:
    """One look-alike of each kind per word, in order word by word (3 * len(words) results).

    Deterministic for (tokenizer, words, seed). Every look-alike is 3-12 lowercase letters, differs
    from every written word, from `avoid`, from the other look-alikes and from common English words.
    Raises ValueError when a kind cannot be satisfied for a word.
    """
    words = list(words)
    for w in words:
        if not isinstance(w, str) or not w.isascii() or not w.isalpha():
            raise ValueError(f"Look-alikes need words of ASCII letters only; got {w!r}.")
    written = {w.lower() for w in words}
    taken = written | {a.strip().lower() for a in avoid}
    out: list[Lookalike] = []

    def ok(cand: str) -> bool:
        return bool(_WORD.fullmatch(cand)) and cand not in taken and cand not in STOP_WORDS

    for source in words:
        word, ids = source.lower(), _ids(tokenizer, source.lower())
        for kind in LOOKALIKE_KINDS:
            # A string seed is hashed with SHA-512 by `random`, so it is stable across runs (unlike hash()).
            rng = random.Random(f"fastmem.eval.probes:{seed}:{word}:{kind}")
            if kind == "same_end":
                cand = _same_end(tokenizer, word, ids, rng, ok)
            elif kind == "same_start":
                cand = _same_start(tokenizer, word, ids, rng, ok)
            else:
                cand = _one_letter(word, rng, ok)
            if cand is None:
                raise ValueError(f"No {kind} look-alike of {source!r} could be made (3-12 letters, unwritten, "
                                 "not a common English word, not already used).")
            taken.add(cand)
            out.append(Lookalike(cand, source, kind))
    return out


# -- contexts never written ---------------------------------------------------------------------
# Close to the written ones ("game X", "the ... lab") and different in shape ("club Q", "level 7").
# The benchmark tests on UNSEEN_CONTEXTS; calibration only ever sees TRAIN_UNSEEN_CONTEXTS.
UNSEEN_CONTEXTS = ("game Z", "game K", "the east lab", "the old lab", "club Q", "level 7")
TRAIN_UNSEEN_CONTEXTS = ("game Q", "game M", "the west lab", "the big lab", "team R", "room 4")


# -- facts the plain model already gets right (locality) -----------------------------------------
@dataclass(frozen=True)
class FactPrompt:
    prompt: str
    answer: str  # one word: the first greedy token of the plain model must start it
    form: str  # "completion" | "question"


@lru_cache(maxsize=1)
def _facts() -> tuple[FactPrompt, ...]:
    raw = json.loads(resources.files("fastmem.data").joinpath("facts.json").read_text(encoding="utf-8"))
    if not isinstance(raw, list):
        raise ValueError("facts.json must hold a list of facts.")
    facts, seen = [], set()
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) != {"prompt", "answer", "form"}:
            raise ValueError(f"facts.json item {i} must have exactly the keys prompt, answer, form.")
        prompt, answer, form = item["prompt"], item["answer"], item["form"]
        if not all(isinstance(v, str) and v.strip() == v and v for v in (prompt, answer, form)):
            raise ValueError(f"facts.json item {i}: prompt, answer and form must be non-blank, trimmed text.")
        if form not in FACT_FORMS or len(answer.split()) != 1:
            raise ValueError(f"facts.json item {i}: form must be one of {FACT_FORMS} and the answer one word.")
        if prompt in seen:
            raise ValueError(f"facts.json item {i}: duplicate prompt {prompt!r}.")
        seen.add(prompt)
        facts.append(FactPrompt(prompt, answer, form))
    return tuple(facts)


def fact_pool() -> list[FactPrompt]:
    """The built-in fact prompts (fastmem/data/facts.json), validated."""
    return list(_facts())


def answer_matches(tokenizer, generated_first_token_id: int, answer: str) -> bool:
    """THE rule for "the plain model gets this fact right", from its first greedy token alone.

    The decoded token, stripped and lowercased, must be non-empty and a prefix of the answer
    (lowercased), and either at least 2 characters long or the whole answer: " Par" counts for
    "Paris", " P", a newline or " Rome" do not; " A" counts for the answer "A".
    """
    token = tokenizer.decode([int(generated_first_token_id)]).strip().lower()
    target = answer.strip().lower()
    return bool(token) and target.startswith(token) and (len(token) >= 2 or token == target)
