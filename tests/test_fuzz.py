"""Property tests: whatever the input, only FastmemError subclasses escape, and a failed call changes
no memory."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastmem.memory import prompts
from fastmem.errors import FastmemError
from fastmem.lab import MAX_WORD, clean_field
from fastmem.eval.suite import load_suite, suite_json
from fastmem.memory.file import from_bytes, to_bytes

MANY = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
FEW = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

# text that likes to break things: braces, spaces, controls, surrogates, RTL marks, emoji, combining marks
ODD = st.sampled_from(list("{}{}  \t\n\x00\x1b\u200b\u200f\u202e\ufeff\ud800?!-'") +
                      ["🙂", "e\u0301", "שלום", "{word}", "{context}", "{0}", "{word!r}", "game A", "dax", "blicket"])
TEXT = st.one_of(st.text(max_size=80), st.lists(st.one_of(ODD, st.text(max_size=4)), max_size=12).map("".join))
ANY = st.one_of(TEXT, st.none(), st.integers(), st.floats(), st.binary(max_size=8), st.lists(st.integers(), max_size=2))


def only_fastmem(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except FastmemError as exc:
        assert str(exc)
        return None


@MANY
@given(name=st.sampled_from(["word", "context", "label"]), text=ANY, max_len=st.integers(1, 200))
def test_clean_field(name, text, max_len):
    out = only_fastmem(clean_field, name, text, max_len)
    if out is not None:
        assert out == out.strip() and 0 < len(out) <= max_len and "{" not in out and "}" not in out
        assert clean_field(name, out, max_len) == out  # idempotent


@MANY
@given(template=st.one_of(TEXT, st.sampled_from(["In {context}, {word} means", "{word}", "{word} {context}?"])),
       word=ANY, context=st.one_of(ANY, st.none()))
def test_render(template, word, context):
    p = only_fastmem(prompts.render, template, word, context)
    if p is not None:
        assert p.word == word
        if p.context_span is not None:
            assert p.text[p.context_span[0]:p.context_span[1]] == context


@MANY
@given(text=ANY, word=ANY, context=st.one_of(ANY, st.none()))
def test_mark(text, word, context):
    p = only_fastmem(prompts.mark, text, word, context)
    if p is not None:
        assert p.word == word
        if context:
            assert p.text[p.context_span[0]:p.context_span[1]] == context


@MANY
@given(text=ANY)
def test_unrelated_prompt(text):
    p = only_fastmem(prompts.unrelated_prompt, text)
    if p is not None:
        assert p.word and p.word_span[0] < p.word_span[1]


@MANY
@given(data=st.one_of(st.binary(max_size=300), TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
                      st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT),
                                   lambda c: st.one_of(st.lists(c, max_size=4),
                                                       st.dictionaries(TEXT, c, max_size=4)),
                                   max_leaves=20).map(lambda v: json.dumps(v).encode())))
def test_load_suite_bytes(data):
    only_fastmem(load_suite, data)


BUILTIN = json.loads(suite_json(load_suite()))


@MANY
@given(path=st.lists(st.sampled_from(["words", "experiments", "unrelated", 0, 1, "word", "labels", "split",
                                      "contexts", "write", "read", "name", "plain"]), min_size=1, max_size=4),
       value=st.recursive(st.one_of(st.none(), st.integers(), TEXT), lambda c: st.lists(c, max_size=3), max_leaves=5))
def test_load_suite_mutated(path, value):
    raw = json.loads(json.dumps(BUILTIN))
    node = raw
    for k in path[:-1]:
        try:
            node = node[k]
        except (KeyError, IndexError, TypeError):
            break
    try:
        node[path[-1]] = value
    except (IndexError, TypeError):
        pass
    only_fastmem(load_suite, json.dumps(raw).encode())


# -- memory files ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def memory_bytes(tiny_lab):
    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, [("blicket", "game A", "red"), ("dax", "game B", "blue"), ("🙂", "the north lab", "cat")])
    return tiny_lab.export_memory(bank)


@MANY
@given(data=st.binary(max_size=400))
def test_from_bytes_random(data):
    only_fastmem(from_bytes, data)


@MANY
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_from_bytes_mutated(memory_bytes, tiny_lab, edits, cut):
    data = bytearray(memory_bytes)
    for where, byte in edits:
        data[int(where * len(data))] = byte
    if cut is not None:
        data = data[:int(cut * len(data))]
    bank = only_fastmem(tiny_lab.import_memory, bytes(data))
    if bank is not None:  # whatever got through is a usable memory of this model
        tiny_lab.ask(bank, tiny_lab.question("dax", "game B"))


@MANY
@given(key=st.sampled_from(["model_name", "hidden_size", "key_layer", "context_layer", "symbol_layer", "value_steps",
                            "projector_id", "entries", "word", "context", "label", "label_id", "write_text",
                            "word_span", "context_span"]),
       value=st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), TEXT),
                          lambda c: st.lists(c, max_size=3), max_leaves=4))
def test_from_bytes_manifest_values(memory_bytes, tiny_lab, key, value):
    from fastmem.memory import file as memory_file

    header = memory_file.read_header(memory_bytes)
    meta = json.loads(header["manifest"])
    if key in meta:
        meta[key] = value
    else:
        meta["entries"][0][key] = value
    from safetensors.torch import load

    data = memory_file.sealed(load(memory_bytes), json.dumps(meta))  # digest made anew: the checks behind it
    got = only_fastmem(tiny_lab.import_memory, data)
    if got is not None:
        tiny_lab.ask(got, tiny_lab.question("dax", "game B"))


# -- the Lab -----------------------------------------------------------------------------------
@MANY
@given(text=ANY, word=st.one_of(st.none(), ANY), context=st.one_of(st.none(), ANY))
def test_parse_question(tiny_lab, text, word, context):
    p = only_fastmem(tiny_lab.parse_question, text, word, context)
    if p is not None:
        assert 0 <= p.word_span[0] < p.word_span[1] <= len(p.text)


ROW_FIELD = st.one_of(TEXT, st.sampled_from(["dax", "blicket", "game A", "red", "blue", " cat ", "red blue"]),
                      st.text(min_size=MAX_WORD, max_size=MAX_WORD + 2), st.none(), st.integers())


@pytest.fixture(scope="module")
def shared_bank(tiny_lab):
    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, [("blicket", "game A", "red")])
    return bank


@FEW
@given(rows=st.lists(st.one_of(st.tuples(ROW_FIELD, ROW_FIELD, ROW_FIELD), ANY), max_size=4),
       on_duplicate=st.sampled_from(["replace", "keep", "replace", "other"]),
       question=ANY, alpha=st.one_of(st.none(), st.floats(), st.integers(-5, 5)),
       threshold=st.one_of(st.just("default"), st.none(), st.floats()))
def test_write_and_ask(tiny_lab, shared_bank, rows, on_duplicate, question, alpha, threshold):
    bank = shared_bank.copy()
    before = to_bytes(bank)
    try:
        results = tiny_lab.write(bank, rows, on_duplicate=on_duplicate)
    except FastmemError:
        assert to_bytes(bank) == before  # a refused call changes nothing
        return
    assert len(results) == len(rows)
    slots = {(r.word, r.context) for r in results if r.status in ("added", "replaced")}
    assert len(bank) == len({e.slot for e in bank.entries})  # never two entries for one slot
    assert all(bank.find(*s) is not None for s in slots)
    if not slots and not any(r.status == "kept" for r in results):
        assert to_bytes(bank) == before  # only failed rows: nothing changed
    after = to_bytes(bank)
    p = only_fastmem(tiny_lab.parse_question, question)
    if p is not None:
        only_fastmem(tiny_lab.ask, bank, p, alpha=alpha, threshold=threshold)
    assert to_bytes(bank) == after
