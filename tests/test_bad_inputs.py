"""One test per row of docs/bad-inputs.md, at the library level (tiny model; no network).

Each test checks what the user sees (a FastmemError subclass whose message has a key phrase, or a
WriteResult with status 'error') and that the memory is byte-for-byte unchanged afterwards.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import pickle
import tracemalloc
import zipfile
from contextlib import contextmanager

import pytest
import torch

from fastmem.memory import file as memory_file
from fastmem.errors import (BindingError, FastmemError, MemoryFileError, ModelLoadError,
                            SettingsError, SuiteError)
from fastmem.lab import Lab, clean_field
from fastmem.memory.bank import MemoryBank, MemoryEntry
from fastmem.eval.suite import MAX_SUITE_BYTES, load_suite, suite_json
from fastmem.memory.file import from_bytes, to_bytes


# -- helpers ------------------------------------------------------------------------------------
def fails(bank, fn, exc_type, phrase):
    """`fn()` raises `exc_type` (a FastmemError) whose message contains `phrase`; `bank` is unchanged."""
    before = to_bytes(bank) if bank is not None else None
    with pytest.raises(FastmemError) as info:
        fn()
    assert isinstance(info.value, exc_type), f"{type(info.value).__name__}: {info.value}"
    assert phrase.lower() in str(info.value).lower(), str(info.value)
    if bank is not None:
        assert to_bytes(bank) == before
    return info.value


def row_fails(lab, bank, row, phrase, **kw):
    """Writing one bad row gives status 'error' with `phrase`, and the memory is unchanged."""
    before = to_bytes(bank)
    [result] = lab.write(bank, [row], **kw)
    assert result.status == "error", result
    assert phrase.lower() in (result.error or "").lower(), result.error
    assert to_bytes(bank) == before
    return result


@pytest.fixture()
def bank(tiny_lab):
    b = tiny_lab.new_memory()
    got = tiny_lab.write(b, [("blicket", "game A", "red"), ("dax", "game B", "blue")])
    assert [r.status for r in got] == ["added", "added"]
    return b


def test_to_bytes_is_deterministic(bank):
    assert to_bytes(bank) == to_bytes(bank) == to_bytes(bank.copy()) == to_bytes(bank.snapshot())


# -- words, contexts, labels ---------------------------------------------------------------------
@pytest.mark.parametrize("row, phrase", [
    (("", "game A", "red"), "word is empty"),
    (("   \t ", "game A", "red"), "word is empty"),
    (("wug", "", "red"), "context is empty"),
    (("wug", "  ", "red"), "context is empty"),
    (("wug", "game A", ""), "label is empty"),
    (("wug", "game A", " \n "), "label is empty"),
    ((None, "game A", "red"), "must be text"),
    (("wug", "game A", 7), "must be text"),
])
def test_empty_or_blank_field(tiny_lab, bank, row, phrase):
    row_fails(tiny_lab, bank, row, phrase)


def test_surrounding_spaces_are_stripped(tiny_lab, bank):
    [r] = tiny_lab.write(bank, [("  wug ", " game A\t", " green ")])
    assert (r.status, r.word, r.context, r.label) == ("added", "wug", "game A", "green")
    assert bank.entries[-1].slot == ("wug", "game A") and bank.entries[-1].label == "green"
    assert tiny_lab.question("  wug ", " game A ").word == "wug"
    assert clean_field("word", "\u00a0 wug \u3000", 64) == "wug"


def test_label_of_several_tokens_is_written_with_a_value_per_token(tiny_lab, bank):
    [ok] = tiny_lab.write(bank, [("wug", "game A", "red blue")])
    assert ok.status == "added"
    entry = bank.entries[-1]
    assert entry.label_ids == tiny_lab.lm.label_tokens("red blue") and entry.values.shape == (2, bank.hidden_size)


def test_label_of_too_many_tokens(tiny_lab, bank):
    row_fails(tiny_lab, bank, ("wug", "game A", " ".join(["A"] * 40)), "is 40 tokens for this model")


def test_label_unknown_to_the_vocabulary(tiny_lab, bank):
    row_fails(tiny_lab, bank, ("wug", "game A", "qwzx"), "not in this model's vocabulary")
    row_fails(tiny_lab, bank, ("wug", "game A", "<eos>"), "not in this model's vocabulary")


@pytest.mark.integration
def test_label_one_token_only_without_leading_space_is_several(tiny_lab, smollm2_lab):
    """With a real BPE tokenizer: a label's tokens are those *with* its leading space (the answer follows
    a space), so a word that is one token only without it is stored as several."""
    from fastmem.model.lm import FrozenLM
    from tiny import tiny_neox

    tok = smollm2_lab.lm.tokenizer
    lm = tiny_neox(tok)  # a tiny random model on the real tokenizer (~3 M parameters)
    lm = FrozenLM(lm.model, tok, "tiny-bpe")
    candidates = ["tion", "ness", "ization", "ologist", "ifying"]
    label = next((w for w in candidates if len(tok(w, add_special_tokens=False)["input_ids"]) == 1
                  and len(tok(" " + w, add_special_tokens=False)["input_ids"]) > 1), None)
    assert label is not None, "no candidate label is one token only without its leading space"
    lab = Lab(lm, tiny_lab.calibration, tiny_lab.geometry, tiny_lab.suite)
    b = lab.new_memory()
    [ok] = lab.write(b, [("wug", "game A", label)])
    assert ok.status == "added"
    assert b.entries[0].label_ids == tuple(tok(" " + label, add_special_tokens=False)["input_ids"])
    assert len(b.entries[0].label_ids) > 1


def test_invented_word_not_in_its_question(tiny_lab, bank):
    fails(bank, lambda: tiny_lab.parse_question("what is blicket?", word="zorp"), BindingError, "does not occur")


def test_word_occurring_twice_uses_the_last(tiny_lab, bank):
    p = tiny_lab.parse_question("dax or dax?", word="dax")
    assert p.word_span == (7, 10)
    p = tiny_lab.parse_question("what is cat in category?", word="cat")
    assert p.word_span == (8, 11)  # a whole-word occurrence wins over one inside 'category'
    before = to_bytes(bank)
    assert tiny_lab.ask(bank, p).answer
    assert to_bytes(bank) == before


@pytest.mark.parametrize("word", ["cat", "x", "blicket-dax-wug-toma"])
def test_common_short_or_many_token_words_work(tiny_lab, bank, word):
    """A real common word, a 1-character word, a word of many tokens: written and answered."""
    [r] = tiny_lab.write(bank, [(word, "game A", "green")])
    assert r.status == "added"
    enc = tiny_lab.lm.encode(tiny_lab.question(word, "game A"))
    assert len(enc.word_positions) == (7 if "-" in word else 1)
    got = tiny_lab.ask(bank, tiny_lab.question(word, "game A"), mode="raw_both_top1", threshold=None)
    assert bank.entries[got.chosen].word == word


def test_context_missing_from_the_question(tiny_lab, bank):
    fails(bank, lambda: tiny_lab.parse_question("what is dax?", word="dax", context="game A"),
          BindingError, "context 'game A' does not occur")


def test_context_never_written(tiny_lab, bank):
    before = to_bytes(bank)
    got = tiny_lab.ask(bank, tiny_lab.question("dax", "game Z"), mode="context_gate")
    assert got.chosen == -1 and "no entry of context 'game z'" in got.reason.lower()
    assert got.answer == got.base_answer
    assert to_bytes(bank) == before


# -- odd characters and sizes -------------------------------------------------------------------
@pytest.mark.parametrize("word", ["größe", "naïve", "日本語", "🙂", "שלום", "مرحبا"])
def test_unicode_emoji_rtl_words_are_written(tiny_lab, bank, word):
    [r] = tiny_lab.write(bank, [(word, "game A", "red")])
    assert r.status == "added", r.error
    got = tiny_lab.ask(bank, tiny_lab.question(word, "game A"))
    assert isinstance(got.answer, str)


def test_unicode_is_normalised(tiny_lab, bank):
    [r] = tiny_lab.write(bank, [("nai\u0308ve", "game A", "red")])
    assert r.word == "naïve" and bank.find("naïve", "game A") is not None


@pytest.mark.parametrize("text", ["a\x00b", "a\x1bb", "a\u200bb", "a\u202eb", "a\nb", "\ud800x"])
def test_control_or_invisible_characters(tiny_lab, bank, text):
    row_fails(tiny_lab, bank, (text, "game A", "red"), "control or invisible")
    row_fails(tiny_lab, bank, ("wug", text, "red"), "control or invisible")


def test_control_characters_in_a_question(tiny_lab, bank):
    fails(bank, lambda: tiny_lab.parse_question("what is \x00dax?"), BindingError, "control or invisible characters")
    fails(bank, lambda: tiny_lab.parse_question("what is \ud800?"), BindingError, "control or invisible characters")
    assert tiny_lab.parse_question("what is\ndax?").word == "dax"  # newlines and tabs are fine


def test_ten_thousand_character_fields(tiny_lab, bank):
    long = "a" * 10_000
    row_fails(tiny_lab, bank, (long, "game A", "red"), "at most 64")
    row_fails(tiny_lab, bank, ("wug", long, "red"), "at most 128")
    row_fails(tiny_lab, bank, ("wug", "game A", long), "at most 120")
    fails(bank, lambda: tiny_lab.parse_question(long + "?"), BindingError, "over 2,000 characters")
    fails(bank, lambda: tiny_lab.question(long), BindingError, "at most 64")


@pytest.mark.parametrize("word", ["{word}", "{}", "a{b", "}", "{context}"])
def test_template_text_in_a_field(tiny_lab, bank, word):
    row_fails(tiny_lab, bank, (word, "game A", "red"), "braces")
    row_fails(tiny_lab, bank, ("wug", word, "red"), "braces")


def test_braces_in_a_typed_question_are_plain_text(tiny_lab, bank):
    p = tiny_lab.parse_question("what is {word} {dax}?")
    assert p.word == "dax"
    before = to_bytes(bank)
    assert isinstance(tiny_lab.ask(bank, p).answer, str)
    assert to_bytes(bank) == before


@pytest.mark.parametrize("template, phrase", [
    ("{x} {word} {context}", "unknown field"), ("{word!r} {context}", "no !conversion"),
    ("{word:>9} {context}", "no !conversion"), ("{word} means", "needs a {context}"),
    ("{context} only", "exactly once"), ("{word} {word} {context}", "exactly once"), ("{word", "not valid"),
    (None, "must be text"),
])
def test_bad_write_template(tiny_lab, bank, template, phrase):
    fails(bank, lambda: tiny_lab.write(bank, [("wug", "game A", "red")], template=template), BindingError, phrase)


# -- rows --------------------------------------------------------------------------------------
@pytest.mark.parametrize("rows", [None, 5, "dax", b"dax", {"word": "dax"}])
def test_rows_not_a_list(tiny_lab, bank, rows):
    fails(bank, lambda: tiny_lab.write(bank, rows), BindingError, "rows must be a list")


@pytest.mark.parametrize("row", ["dax", ("dax", "game A"), ("dax", "game A", "red", "x"), None, 5])
def test_row_not_a_triple(tiny_lab, bank, row):
    row_fails(tiny_lab, bank, row, "a row must be (word, context, label)")


def test_bad_rows_do_not_stop_good_rows(tiny_lab, bank):
    got = tiny_lab.write(bank, [("", "game A", "red"), ("wug", "game A", "green"), ("zib", "game A", "A " * 60)])
    assert [r.status for r in got] == ["error", "added", "error"]
    assert len(bank) == 3


# -- duplicates --------------------------------------------------------------------------------
def test_duplicate_binding_replaces_by_default(tiny_lab, bank):
    [r] = tiny_lab.write(bank, [("blicket", "game A", "green")])
    assert r.status == "replaced" and len(bank) == 2
    assert bank.entries[bank.find("blicket", "game A")].label == "green"


def test_duplicate_binding_keep(tiny_lab, bank):
    before = to_bytes(bank)
    [r] = tiny_lab.write(bank, [("blicket", "game A", "green")], on_duplicate="keep")
    assert r.status == "kept" and to_bytes(bank) == before


def test_duplicate_within_one_batch(tiny_lab, bank):
    got = tiny_lab.write(bank, [("wug", "game A", "red"), ("wug", "game A", "green")])
    assert got[0].status == "error" and "appears again later" in got[0].error
    assert got[1].status == "added" and len(bank) == 3
    assert bank.entries[bank.find("wug", "game A")].label == "green"


def test_duplicate_policy_unknown(tiny_lab, bank):
    fails(bank, lambda: tiny_lab.write(bank, [("blicket", "game A", "green")], on_duplicate="error"),
          SettingsError, "'replace' or 'keep'")


# -- questions and settings --------------------------------------------------------------------
def test_question_against_an_empty_memory(tiny_lab):
    empty = tiny_lab.new_memory()
    got = tiny_lab.ask(empty, tiny_lab.question("dax", "game A"))
    assert got.chosen == -1 and "memory is empty" in got.reason and got.answer == got.base_answer
    assert len(empty) == 0


@pytest.mark.parametrize("text", ["", "   ", None, 5, "?", "🙂🙂?", "!!!"])
def test_question_without_a_word(tiny_lab, bank, text):
    fails(bank, lambda: tiny_lab.parse_question(text), BindingError, "question")


def test_marked_word_or_context_of_wrong_type(tiny_lab, bank):
    fails(bank, lambda: tiny_lab.parse_question("what is dax?", word=5), BindingError, "must be text")
    fails(bank, lambda: tiny_lab.parse_question("what is dax?", word="dax", context=["x"]), BindingError,
          "must be text")


def test_ask_needs_a_prompt_and_a_memory(tiny_lab, bank):
    fails(bank, lambda: tiny_lab.ask(bank, 42), BindingError, "typed question")
    fails(bank, lambda: tiny_lab.ask(bank, "what is \x00dax?"), BindingError, "control or invisible characters")
    assert tiny_lab.ask(bank, "what is dax in game B?").prompt.text == "what is dax in game B?"  # typed: accepted
    fails(None, lambda: tiny_lab.ask(None, tiny_lab.question("dax")), SettingsError, "MemoryBank")


def test_alpha_zero_is_the_plain_model(tiny_lab, bank):
    got = tiny_lab.ask(bank, tiny_lab.question("dax", "game B"), alpha=0)
    assert torch.equal(got.logits, got.base_logits)


@pytest.mark.parametrize("alpha", [-1, -1e-9, math.nan, math.inf, -math.inf, 1e9, "x", True, [1.0]])
def test_alpha_out_of_range(tiny_lab, bank, alpha):
    fails(bank, lambda: tiny_lab.ask(bank, tiny_lab.question("dax", "game B"), alpha=alpha), SettingsError, "alpha")


@pytest.mark.parametrize("threshold", [-1.01, 1.01, 2, math.nan, math.inf, "x", "0.5", True])
def test_threshold_outside_minus_one_to_one(tiny_lab, bank, threshold):
    fails(bank, lambda: tiny_lab.ask(bank, tiny_lab.question("dax", "game B"), threshold=threshold),
          SettingsError, "threshold")


@pytest.mark.parametrize("threshold", [-1, 1, 0.0, None])
def test_threshold_edges_are_allowed(tiny_lab, bank, threshold):
    assert tiny_lab.ask(bank, tiny_lab.question("dax", "game B"), threshold=threshold).threshold == threshold


@pytest.mark.parametrize("mode", ["bogus", "", None, ["dual_key"]])
def test_unknown_mode(tiny_lab, bank, mode):
    fails(bank, lambda: tiny_lab.ask(bank, tiny_lab.question("dax"), mode=mode), SettingsError, "unknown mode")


@pytest.mark.parametrize("n", [-1, "3", 2.5, True])
def test_max_new_tokens_not_a_count(tiny_lab, bank, n):
    fails(bank, lambda: tiny_lab.ask(bank, tiny_lab.question("dax"), max_new_tokens=n), SettingsError,
          "max_new_tokens")
    answer = tiny_lab.ask(bank, tiny_lab.question("dax"))
    for bad in (n, 0):
        fails(bank, lambda bad=bad: tiny_lab.continue_answer(answer, bad), SettingsError, "max_new_tokens")


@pytest.mark.parametrize("layer", [-1, 5, 99, 1.5, "2", True])
def test_rekey_layer_out_of_range(tiny_lab, bank, layer):
    fails(bank, lambda: tiny_lab.rekey(bank, layer), SettingsError, "out of range")


def test_rekey_leaves_the_original(tiny_lab, bank):
    before = to_bytes(bank)
    new = tiny_lab.rekey(bank, 1)
    assert new.key_layer == 1 and len(new) == len(bank) and to_bytes(bank) == before
    for a, b in zip(new.entries, bank.entries):
        assert torch.equal(a.value, b.value) and a.slot == b.slot


def test_keyed_at_keeps_one_rekeyed_copy_per_version_and_carries_switches(tiny_lab, bank):
    assert tiny_lab.keyed_at(bank, bank.key_layer) is bank
    first = tiny_lab.keyed_at(bank, 1)
    assert first.key_layer == 1 and tiny_lab.keyed_at(bank, 1) is first  # read once per version of the memory
    bank.set_enabled(0, False)
    switched = tiny_lab.keyed_at(bank, 1)
    assert switched is first and not switched.is_enabled(0) and switched.is_enabled(1)
    bank.set_enabled(0, True)
    assert tiny_lab.keyed_at(bank, 1).is_enabled(0)
    tiny_lab.write(bank, [("wug", "game A", "green")])
    after = tiny_lab.keyed_at(bank, 1)
    assert after is not first and [e.slot for e in after.entries] == [e.slot for e in bank.entries]
    for layer in (-1, 99):
        fails(bank, lambda layer=layer: tiny_lab.keyed_at(bank, layer), SettingsError, "out of range")


# -- memories of 1 and of 100,000 entries -----------------------------------------------------
def synthetic_bank(lab: Lab, n: int, seed: int = 0) -> MemoryBank:
    g = torch.Generator().manual_seed(seed)
    empty = lab.new_memory()
    d = empty.hidden_size
    t = {f: torch.randn(n, d, generator=g) for f in ("key", "context_key", "symbol_key", "value")}
    words, contexts = torch.randn(n, 3, d, generator=g), torch.randn(n, 2, d, generator=g)
    text = "In game A, w means"
    entries = [MemoryEntry(f"w{i}", "game A", "red", 5, text, (11, 12), (3, 9), t["value"][i], key=t["key"][i],
                           context_key=t["context_key"][i], symbol_key=t["symbol_key"][i], word_tokens=words[i],
                           context_tokens=contexts[i]) for i in range(n)]
    return MemoryBank(empty.model_name, d, empty.key_layer, empty.context_layer, empty.symbol_layer,
                      empty.value_steps, entries, empty.token_layer)


def test_memory_of_one_entry(tiny_lab):
    b = tiny_lab.new_memory()
    tiny_lab.write(b, [("dax", "game B", "blue")])
    for mode in ("dual_key", "raw_both_top1", "both_top1", "context_gate", "average"):
        got = tiny_lab.ask(b, tiny_lab.question("dax", "game B"), mode=mode, threshold=None)
        assert got.chosen in (-1, 0) and got.scores.shape == (1,)


def test_a_memory_of_100k_entries_answers_in_every_mode(tiny_lab):
    """(How fast is measured by scripts/bench_retrieval.py and `fastmem scale`, not here.)"""
    b = synthetic_bank(tiny_lab, 100_000)
    q = tiny_lab.question("dax", "game B")
    for mode in ("dual_key", "raw_both_top1", "both_top1", "token_match", "span_match"):
        got = tiny_lab.ask(b, q, mode=mode, threshold=None)
        assert got.scores.shape == (100_000,) and -1 <= got.chosen < 100_000
        # random keys may match nothing at all; no entry's word is a known token, so slot-free reading finds none
        assert got.chosen >= 0 or mode in ("token_match", "span_match")


# -- suite files -------------------------------------------------------------------------------
@pytest.mark.parametrize("data", [b"\xff\xfe\x00", b"{", b"words: [", b"a: b: c", b"\x00\x01"])
def test_suite_not_json_or_yaml(data):
    fails(None, lambda: load_suite(data), SuiteError, "neither JSON nor YAML")


@pytest.mark.parametrize("data", [b"", b"null", b"[1, 2]", b"42", b"just text"])
def test_suite_not_a_mapping(data):
    fails(None, lambda: load_suite(data), SuiteError, "mapping")


def builtin_raw() -> dict:
    return json.loads(suite_json(load_suite()))


def test_suite_missing_fields():
    raw = builtin_raw()
    del raw["words"]
    fails(None, lambda: load_suite(json.dumps(raw).encode()), SuiteError, "words: Field required")
    raw = builtin_raw()
    del raw["words"][0]["labels"]
    fails(None, lambda: load_suite(json.dumps(raw).encode()), SuiteError, "labels: Field required")


@pytest.mark.parametrize("path, value, phrase", [
    (("words",), 5, "valid list"), (("words", 0, "word"), 12, "valid string"),
    (("words", 0, "labels"), ["red"], "at least 2"), (("words", 0, "split"), "dev", "'train' or 'test'"),
    (("words", 0, "word"), " dax", "leading/trailing"), (("experiments", 0, "read"), "no slots", "{word}"),
    (("experiments", 0, "write"), "{word} {bad}", "unknown field"), (("unrelated",), ["?"], "no word to key on"),
    (("experiments", 0, "contexts"), "game A", "valid list"), (("name",), {"a": 1}, "valid string"),
])
def test_suite_wrong_types(path, value, phrase):
    raw = builtin_raw()
    node = raw
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    fails(None, lambda: load_suite(json.dumps(raw).encode()), SuiteError, phrase)


@contextmanager
def peak_memory():
    """Yields a function giving the peak bytes Python allocated inside the block (a bound that a slow machine
    cannot break, unlike a time limit)."""
    peak = [0]
    tracemalloc.start()
    try:
        yield lambda: peak[0]
    finally:
        peak[0] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def test_suite_huge(tmp_path):
    big = b"x" * (MAX_SUITE_BYTES + 1)
    fails(None, lambda: load_suite(big), SuiteError, "over 5 MiB")
    (tmp_path / "big.json").write_bytes(big)
    fails(None, lambda: load_suite(tmp_path / "big.json"), SuiteError, "over 5 MiB")


def test_suite_nested_or_expanding():
    fails(None, lambda: load_suite(b"[" * 100_000), SuiteError, "nested")
    fails(None, lambda: load_suite(b"{a: " * 60 + b"1" + b"}" * 60), SuiteError, "nested")
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcdefg", "bcdefgh")) + "unrelated: *h\n"
    with peak_memory() as peak:
        fails(None, lambda: load_suite(laughs.encode()), SuiteError, "too large")
    assert peak() < 20_000_000  # expanded, the document is 10^8 strings


def test_suite_yaml_never_runs_code(tmp_path):
    flag = tmp_path / "ran"
    data = f"!!python/object/apply:os.system ['touch {flag}']".encode()
    fails(None, lambda: load_suite(data), SuiteError, "neither JSON nor YAML")
    assert not flag.exists()


def test_suite_source_of_wrong_kind(tmp_path):
    fails(None, lambda: load_suite(5), SuiteError, "not int")
    fails(None, lambda: load_suite(tmp_path / "missing.yaml"), SuiteError, "not found")
    fails(None, lambda: load_suite(tmp_path), SuiteError, "not found")


def test_suite_yaml_equals_json():
    import yaml

    suite = load_suite()
    assert load_suite(yaml.safe_dump(suite.model_dump()).encode()) == suite


# -- memory files ------------------------------------------------------------------------------
def import_fails(lab, bank, data, phrase, file_level=True):
    """Importing `data` raises MemoryFileError with `phrase`; the user's current memory is unchanged.
    `file_level`: the file alone is bad (MemoryBank.from_bytes refuses it too), not just its model."""
    fails(bank, lambda: lab.import_memory(data), MemoryFileError, phrase)
    if file_level:
        fails(bank, lambda: from_bytes(data, expect_hidden_size=lab.lm.hidden_size), MemoryFileError, "")


def test_round_trip_is_exact(tiny_lab, bank):
    tiny_lab.write(bank, [("שלום", "the north lab", "cat"), ("🙂", "game A", "dog")])
    data = tiny_lab.export_memory(bank)
    back = tiny_lab.import_memory(data)
    for name in ("model_name", "hidden_size", "key_layer", "context_layer", "symbol_layer", "value_steps"):
        assert getattr(back, name) == getattr(bank, name)
    assert len(back) == len(bank) == 4
    for a, b in zip(back.entries, bank.entries):
        for f in ("word", "context", "label", "label_id", "write_text", "word_span", "context_span"):
            assert getattr(a, f) == getattr(b, f)
        assert torch.equal(a.value, b.value) and a.value.dtype == torch.float32
    assert from_bytes(data)[1] == []  # checked by its digest: no note
    assert tiny_lab.export_memory(back) == data
    q = tiny_lab.question("dax", "game B")
    assert torch.equal(tiny_lab.ask(back, q).logits, tiny_lab.ask(bank, q).logits)


def test_round_trip_of_an_empty_memory(tiny_lab):
    empty = tiny_lab.new_memory()
    back = tiny_lab.import_memory(tiny_lab.export_memory(empty))
    assert len(back) == 0 and to_bytes(back) == to_bytes(empty)


def test_memory_file_truncated(tiny_lab, bank):
    data = tiny_lab.export_memory(bank)
    for cut in (0, 4, 8, 100, len(data) // 2, len(data) - 1):
        import_fails(tiny_lab, bank, data[:cut], "not a fastmem memory file")


def test_memory_file_corrupted(tiny_lab, bank):
    data = bytearray(tiny_lab.export_memory(bank))
    n = int.from_bytes(data[:8], "little")
    head = bytes(data[8:8 + n])
    at = head.index(b'"hidden_size')
    bad = bytes(data[:8 + at]) + b"#" + bytes(data[8 + at + 1:])
    import_fails(tiny_lab, bank, bad, "")
    import_fails(tiny_lab, bank, b"\x00" * 64 + bytes(data[64:]), "not a fastmem memory file")


def test_memory_file_with_nan_values(tiny_lab, bank):
    poisoned = bank.copy()
    e = poisoned.entries[0]
    for bad in (math.nan, math.inf, 3e38):
        poisoned.add(dataclasses.replace(e, value=torch.full_like(e.value, bad)))
        import_fails(tiny_lab, bank, to_bytes(poisoned), "out-of-range")


def test_memory_file_of_another_model(tiny_lab, bank):
    other = MemoryBank("other-model", 64, 3, 1, 1, 8)
    import_fails(tiny_lab, bank, to_bytes(other), "hidden size 64")
    same_size = MemoryBank("other-model", bank.hidden_size, 3, 1, 1, 8)
    import_fails(tiny_lab, bank, to_bytes(same_size), "belongs to 'other-model'", file_level=False)
    deep = MemoryBank(bank.model_name, bank.hidden_size, 40, 1, 1, 8)
    import_fails(tiny_lab, bank, to_bytes(deep), "layers beyond", file_level=False)


def test_memory_file_label_outside_the_vocabulary(tiny_lab, bank):
    meta = json.loads(memory_file.read_header(to_bytes(bank))["manifest"])
    entries = [{**e, "label_id": 99999} for e in meta["entries"]]
    import_fails(tiny_lab, bank, manifest_file(bank, entries=entries), "outside this model's vocabulary",
                 file_level=False)


def manifest_file(bank: MemoryBank, version: str = "4", fmt: str = "fastmem-memory", **changes) -> bytes:
    """A memory file with its manifest changed and a digest made anew, so that what lies behind the digest (the
    checks of every field) is what is tested; or another format or version (no digest)."""
    from safetensors.torch import load

    data = to_bytes(bank)
    meta = json.loads(memory_file.read_header(data)["manifest"])
    meta.update(changes)
    if version == "4" and fmt == "fastmem-memory":
        return memory_file.sealed(load(data), json.dumps(meta))
    return memory_file.save_tensors(load(data), {"format": fmt, "version": version, "manifest": json.dumps(meta)})


def test_memory_file_of_a_future_version(tiny_lab, bank):
    import_fails(tiny_lab, bank, manifest_file(bank, version="5"), "version '5' is not supported")


@pytest.mark.parametrize("changes, phrase", [
    ({"hidden_size": "32"}, "malformed"), ({"hidden_size": 1e400}, "malformed"), ({"key_layer": -1}, "malformed"),
    ({"entries": {"a": 1}}, "malformed"), ({"model_name": None}, "malformed"), ({"projector_id": "p"}, "does not know"),
    ({"entries": []}, "shape"), ({"value_steps": 10 ** 9}, "value steps"), ({"value_steps": 0}, "value steps"),
])
def test_memory_file_with_a_bad_manifest(tiny_lab, bank, changes, phrase):
    import_fails(tiny_lab, bank, manifest_file(bank, **changes), phrase)


def test_safetensors_file_that_is_not_a_memory(tiny_lab, bank):
    from safetensors.torch import save

    import_fails(tiny_lab, bank, save({"weight": torch.zeros(3, 3)}), "not a fastmem memory file")
    import_fails(tiny_lab, bank, manifest_file(bank, fmt="other"), "not a fastmem memory file")


def test_renamed_pickle_is_never_unpickled(tiny_lab, bank, tmp_path):
    flag = tmp_path / "pickled"
    payload = pickle.dumps(type("X", (), {"__reduce__": lambda self: (flag.touch, ())})())
    import_fails(tiny_lab, bank, payload, "pickle")
    assert not flag.exists()
    buf = io.BytesIO()
    torch.save({"x": torch.zeros(2)}, buf)  # a torch checkpoint is a zip with a pickle inside
    import_fails(tiny_lab, bank, buf.getvalue(), "zip")


def test_zip_and_zip_bomb(tiny_lab, bank):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("memory.safetensors", tiny_lab.export_memory(bank))
        z.writestr("bomb", b"\0" * 50_000_000)  # ~50 kB compressed, 50 MB if anyone unpacked it
    with peak_memory() as peak:
        import_fails(tiny_lab, bank, buf.getvalue(), "zip archive")
    assert peak() < 20_000_000  # the bomb was never unpacked


def test_oversized_upload(tiny_lab, bank, monkeypatch):
    data = tiny_lab.export_memory(bank)
    monkeypatch.setattr(memory_file, "MAX_FILE_BYTES", len(data) - 1)
    import_fails(tiny_lab, bank, data, "memory files are at most")
    fails(bank, lambda: tiny_lab.import_memory(bytearray(data)), MemoryFileError, "at most")


def test_header_claims_a_huge_length(tiny_lab, bank):
    for n in (2**63, 2**64 - 1, 10**9):
        import_fails(tiny_lab, bank, n.to_bytes(8, "little") + b'{"__metadata__":{}}', "not a fastmem memory file")


@pytest.mark.parametrize("data", [None, "text", 5, [1, 2]])
def test_memory_file_not_bytes(tiny_lab, bank, data):
    import_fails(tiny_lab, bank, data, "must be given as bytes")


def test_memory_of_another_model_at_ask(tiny_lab, bank):
    alien = MemoryBank("other-model", bank.hidden_size, 3, 1, 1, 8)
    fails(alien, lambda: tiny_lab.ask(alien, tiny_lab.question("dax")), SettingsError, "belongs to")
    fails(alien, lambda: tiny_lab.write(alien, [("dax", "game A", "red")]), SettingsError, "belongs to")


# -- models ------------------------------------------------------------------------------------
@pytest.mark.timeout(300)  # offline, a missing model fails at once; this only stops a retry loop hanging CI
def test_model_that_does_not_exist(monkeypatch):
    from fastmem.model.loading import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fails(None, lambda: load_model("no-such-org/no-such-model-xyz", "cpu"), ModelLoadError, "cannot load")
    fails(None, lambda: load_model("", "cpu"), ModelLoadError, "no model given")
    fails(None, lambda: load_model("   ", "cpu"), ModelLoadError, "no model given")


def test_folder_that_is_not_a_model(tmp_path):
    from fastmem.model.loading import load_model

    (tmp_path / "notes.txt").write_text("hello")
    fails(None, lambda: load_model(str(tmp_path), "cpu"), ModelLoadError, "not a model")
    (tmp_path / "config.json").write_text("{not json")
    fails(None, lambda: load_model(str(tmp_path), "cpu"), ModelLoadError, "cannot load the model")
    fails(None, lambda: load_model(str(tmp_path / "missing.gguf"), "cpu"), ModelLoadError, "not found")


# -- free statements (word, context and label marked by the user) ---------------------------------------
def statement_fails(lab, bank, statement, word, context, label, phrase):
    before = to_bytes(bank)
    result = lab.write_statement(bank, statement, word, context, label)
    assert result.status == "error" and phrase.lower() in result.error.lower(), result
    assert to_bytes(bank) == before


def test_free_statement_is_written_and_keyed_like_a_form(tiny_lab):
    bank = tiny_lab.new_memory()
    got = tiny_lab.write_statement(bank, "In game A , dax means red blue", "dax", "game A", "red blue")
    assert got.status == "added"
    [entry] = bank.entries
    assert entry.write_text == "In game A , dax means" and entry.label == "red blue"
    assert entry.write_text[slice(*entry.word_span)] == "dax" and entry.write_text[slice(*entry.context_span)] == "game A"
    assert tiny_lab.ask(bank, tiny_lab.question("dax", "game A")).chosen == 0


def test_free_statement_with_the_label_missing(tiny_lab, bank):
    statement_fails(tiny_lab, bank, "In game A, dax means red", "dax", "game A", "blue", "does not occur in the statement")


def test_free_statement_with_the_word_or_context_after_the_label(tiny_lab, bank):
    statement_fails(tiny_lab, bank, "In game A, red is what dax means", "dax", "game A", "red", "occurs only after")
    statement_fails(tiny_lab, bank, "dax means red in game A", "dax", "game A", "red", "occurs only after")
    statement_fails(tiny_lab, bank, "red: dax in game A", "dax", "game A", "red", "starts with its label")


def test_free_statement_with_overlapping_marks(tiny_lab, bank):
    statement_fails(tiny_lab, bank, "In game A, dax means red", "dax", "dax means", "red", "overlaps the word")


def test_free_statement_with_a_missing_mark(tiny_lab, bank):
    statement_fails(tiny_lab, bank, "In game A, dax means red", "", "game A", "red", "word is empty")
    statement_fails(tiny_lab, bank, "In game A, dax means red", "dax", "game A", "", "label is empty")
    statement_fails(tiny_lab, bank, "In game A, dax means red", "zorp", "game A", "red", "does not occur")


def test_custom_form_without_a_context_slot_is_refused(tiny_lab, bank):
    with pytest.raises(BindingError, match="needs a {context} slot"):
        tiny_lab.write(bank, [("dax", "game A", "red")], template="The word {word} means")
    with pytest.raises(BindingError, match="needs a {context} slot"):
        tiny_lab.preview_statement("The word {word} means", "dax", "game A", "red")
