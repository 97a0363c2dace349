"""Hard negative probes: look-alike words, unwritten contexts, the fact pool and its answer rule."""
import dataclasses
import re

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from fastmem.eval.probes import (LOOKALIKE_KINDS, STOP_WORDS, TRAIN_UNSEEN_CONTEXTS, UNSEEN_CONTEXTS, FactPrompt,
                            Lookalike, answer_matches, fact_pool, lookalikes)
from fastmem.eval.suite import TRAIN_UNRELATED, UNRELATED, load_suite, nonce_words
from tiny import word_tokenizer

WORDS = nonce_words(60, seed=7)


@pytest.fixture(scope="module")
def bpe():
    """A small byte-level BPE (GPT-2 style) trained in memory: nonce words split into several sub-tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [" " + w for w in nonce_words(600, seed=123)]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok)


@pytest.fixture(scope="module")
def words_tok():
    return word_tokenizer(WORDS)


def ids(tokenizer, word):
    return tokenizer(" " + word, add_special_tokens=False)["input_ids"]


def test_bpe_fixture_splits_words(bpe):
    assert sum(len(ids(bpe, w)) >= 2 for w in WORDS) >= 0.9 * len(WORDS)


@pytest.mark.parametrize("which", ["bpe", "words_tok"])
def test_deterministic_ordered_and_seeded(which, request):
    tok = request.getfixturevalue(which)
    a, b = lookalikes(tok, WORDS, seed=0), lookalikes(tok, WORDS, seed=0)
    assert a == b and len(a) == 3 * len(WORDS)
    assert [x.source for x in a] == [w for w in WORDS for _ in LOOKALIKE_KINDS]
    assert [x.kind for x in a] == list(LOOKALIKE_KINDS) * len(WORDS)
    assert lookalikes(tok, WORDS[:5], seed=0) == a[:15]  # one word's probes do not depend on later words
    other = lookalikes(tok, WORDS, seed=1)
    assert sum(x.word != y.word for x, y in zip(a, other)) > len(a) // 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        a[0].word = "zzz"


@pytest.mark.parametrize("which", ["bpe", "words_tok"])
def test_every_lookalike_is_new_plain_and_unique(which, request):
    tok = request.getfixturevalue(which)
    avoid = [x.word for x in lookalikes(tok, WORDS, seed=3)]  # a set that certainly overlaps the usual picks
    out = lookalikes(tok, WORDS, seed=3, avoid=avoid + ["Zzzz "])
    got = [x.word for x in out]
    assert all(re.fullmatch(r"[a-z]{3,12}", w) for w in got)
    assert len(set(got)) == len(got)
    assert not set(got) & set(WORDS) and not set(got) & set(avoid) and not set(got) & STOP_WORDS
    assert all(abs(len(x.word) - len(x.source)) <= 2 for x in out)


def test_subtoken_kinds_share_tokens(bpe):
    out = lookalikes(bpe, WORDS, seed=0)
    end_ok = start_ok = 0
    for x in out:
        src, got = ids(bpe, x.source), ids(bpe, x.word)
        if x.kind == "same_end":
            verified = len(src) >= 2 and len(got) >= len(src[1:]) + 1 and got[-len(src[1:]):] == src[1:] \
                and got[0] != src[0]
            tail = x.source[-4:] if len(x.source) > 4 else x.source[1:]
            assert verified or x.word.endswith(tail)  # else the string fallback
            end_ok += verified
        elif x.kind == "same_start":
            verified = len(got) >= 2 and got[0] == src[0] and got[-1] != src[-1]
            assert verified or x.word[:3] == x.source[:3]
            start_ok += verified
    multi = sum(len(ids(bpe, w)) >= 2 for w in WORDS)
    assert end_ok >= 0.9 * multi and start_ok >= 0.9 * multi  # the verified sub-token path is the normal one


def test_single_token_words_use_the_string_fallback(words_tok):
    assert all(len(ids(words_tok, w)) == 1 for w in WORDS)
    for x in lookalikes(words_tok, WORDS, seed=0):
        if x.kind == "same_end":
            tail = x.source[-4:] if len(x.source) > 4 else x.source[1:]
            assert x.word.endswith(tail) and x.word[:-len(tail)] != x.source[:-len(tail)]
        elif x.kind == "same_start":
            assert x.word[:3] == x.source[:3] and x.word[3:] != x.source[3:]


@pytest.mark.parametrize("which", ["bpe", "words_tok"])
def test_one_letter_changes_exactly_one_letter_of_the_same_class(which, request):
    tok = request.getfixturevalue(which)
    for x in lookalikes(tok, WORDS, seed=5):
        if x.kind != "one_letter":
            continue
        assert len(x.word) == len(x.source)
        diff = [i for i, (a, b) in enumerate(zip(x.word, x.source)) if a != b]
        assert len(diff) == 1
        i = diff[0]
        assert (x.word[i] in "aeiou") == (x.source[i] in "aeiou")


def test_impossible_or_bad_words_raise(words_tok):
    with pytest.raises(ValueError, match="one_letter|same_end|same_start"):
        lookalikes(word_tokenizer(["ab"]), ["ab"], seed=0)  # every look-alike would be under 3 letters
    with pytest.raises(ValueError, match="letters"):
        lookalikes(words_tok, ["blicket", "dax2"], seed=0)
    assert lookalikes(words_tok, [], seed=0) == []


def test_builtin_suite_words_get_probes(bpe):
    words = [w.word for w in load_suite().words]
    out = lookalikes(bpe, words, seed=0)
    assert len(out) == 3 * len(words) and not {x.word for x in out} & set(words)


def test_stop_list_has_the_obvious_words():
    assert len(STOP_WORDS) >= 200 and {"back", "rain", "cake", "game"} <= STOP_WORDS


def test_unseen_contexts():
    builtin = {c for e in load_suite().experiments for c in e.contexts}
    assert {"game A", "game B", "game C", "game D", "the north lab", "the south lab"} <= builtin
    assert len(UNSEEN_CONTEXTS) >= 4 and len(TRAIN_UNSEEN_CONTEXTS) >= 4
    assert len(set(UNSEEN_CONTEXTS)) == len(UNSEEN_CONTEXTS)
    assert len(set(TRAIN_UNSEEN_CONTEXTS)) == len(TRAIN_UNSEEN_CONTEXTS)
    assert not set(UNSEEN_CONTEXTS) & set(TRAIN_UNSEEN_CONTEXTS)
    assert not (set(UNSEEN_CONTEXTS) | set(TRAIN_UNSEEN_CONTEXTS)) & builtin
    for ctxs in (UNSEEN_CONTEXTS, TRAIN_UNSEEN_CONTEXTS):  # mixed shapes: near the written ones and not
        assert any(c.startswith("game ") for c in ctxs) and any(re.fullmatch(r"the \w+ lab", c) for c in ctxs)
        assert any(not c.startswith("game ") and not c.endswith(" lab") for c in ctxs)


def test_fact_pool():
    pool = fact_pool()
    assert all(isinstance(f, FactPrompt) for f in pool)
    assert len(pool) >= 160
    assert sum(f.form == "completion" for f in pool) >= 100 and sum(f.form == "question" for f in pool) >= 60
    prompts = [f.prompt for f in pool]
    assert len(set(prompts)) == len(prompts)
    assert not set(prompts) & set(UNRELATED + TRAIN_UNRELATED)
    assert all(f.answer and len(f.answer.split()) == 1 and f.prompt.strip() == f.prompt for f in pool)
    assert all(f.prompt.startswith("Question: ") and f.prompt.endswith(" Answer:")
               for f in pool if f.form == "question")
    nonce = {w.word.lower() for w in load_suite().words}
    assert not {t.lower() for f in pool for t in re.findall(r"[A-Za-z]+", f.prompt)} & nonce
    pool[0] = None  # a copy: the cached pool is untouched
    assert fact_pool()[0] is not None


class FakeTokenizer:
    pieces = {0: " Paris", 1: " Par", 2: " P", 3: "\n", 4: " ", 5: " Rome", 6: " A", 7: "", 8: " paris",
              9: "Paris", 10: " Parisian", 11: " 4", 12: " ar"}

    def decode(self, token_ids):
        return "".join(self.pieces[i] for i in token_ids)


@pytest.mark.parametrize("token,answer,expected", [
    (0, "Paris", True), (1, "Paris", True), (8, "Paris", True), (9, "Paris", True), (0, "paris", True),
    (2, "Paris", False),  # one letter that is not the whole answer
    (3, "Paris", False), (4, "Paris", False), (7, "Paris", False),  # newline, space, empty
    (5, "Paris", False), (10, "Paris", False), (12, "Paris", False),  # wrong, too long, not a prefix
    (6, "A", True), (6, "Au", False), (11, "4", True),
])
def test_answer_matches(token, answer, expected):
    assert answer_matches(FakeTokenizer(), token, answer) is expected


def test_answer_matches_with_a_real_tokenizer(bpe):
    first = ids(bpe, "blicket")[0]
    assert answer_matches(bpe, first, "blicket") == (len(bpe.decode([first]).strip()) >= 2)
    assert not answer_matches(bpe, first, "zzzz")


def test_lookalike_record():
    assert Lookalike("vaif", "vaiblund", "same_start").kind in LOOKALIKE_KINDS
