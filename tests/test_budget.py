"""Work per request is bounded (issue 31, items 3 and 4): texts are limited in tokens, forward passes run in
chunks of bounded size with results identical to one batch, a manifest that could not describe its value rows
is refused before it is parsed, and every write that lands can be reopened (tiny models; no network)."""
from __future__ import annotations

import json
import tracemalloc

import pytest
import torch
from safetensors.torch import load as st_load

from fastmem.errors import BindingError, FastmemError, MemoryFileError, ResourceError
from fastmem.fields import MAX_FORM, MAX_FORM_TOKENS, MAX_TEXT_TOKENS
from fastmem.memory import file as memory_file
from fastmem.memory.file import to_bytes
from fastmem.memory.prompts import render
from fastmem.model.batching import plan_chunks

from test_bad_inputs import bank, fails, manifest_file, row_fails  # noqa: F401 (the fixture)

FORMS = ["In {context}, {word} means", "According to {context}, {word} means", "{word} in {context} means"]
WORDS = ["blicket", "dax", "wug", "toma blicket dax", "größe", "🙂", "שלום", "x"]


def prompts_of(n: int):
    """Write prompts of varied lengths (1 to ~20 tokens) in varied forms."""
    return [render(FORMS[i % 3], " ".join(WORDS[(i + k) % len(WORDS)] for k in range(1 + i % 4)),
                   "game " + "A B C D"[: 1 + 2 * (i % 3)]) for i in range(n)]


# -- chunks --------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["neox", "llama"])
def test_chunked_states_are_those_of_one_batch(request, model):
    lm = request.getfixturevalue(model)
    prompts = prompts_of(40)
    one = lm.states(prompts, batch_size=1000, token_budget=10 ** 9, token_layers=(1, 3))
    done = []
    chunked = lm.states(prompts, batch_size=7, token_budget=24, token_layers=(1, 3), progress=done.append)
    assert len(done) > 5 and sum(done) == len(prompts)  # progress once per chunk
    for field in ("word", "context", "final", "last"):
        assert torch.allclose(getattr(one, field), getattr(chunked, field), atol=1e-5), field
    for field in ("word_tokens", "context_tokens"):
        a, b = getattr(one, field), getattr(chunked, field)
        assert torch.equal(a.mask, b.mask) and torch.allclose(a.states, b.states, atol=1e-5), field
    assert torch.equal(one.question.ids, chunked.question.ids)
    kept = lm.states(prompts, token_budget=24, keep=(3, 1))
    assert kept.layers == (1, 3) and torch.allclose(kept.word_at(3), one.word[:, 3], atol=1e-5)
    assert torch.allclose(kept.context_at(1), one.context[:, 1], atol=1e-5)


def test_no_forward_pass_exceeds_the_token_budget(neox):
    seen = []
    hook = neox.model.register_forward_pre_hook(lambda _, args, kw: seen.append(tuple(kw["input_ids"].shape)),
                                                with_kwargs=True)
    try:
        neox.states(prompts_of(50), token_budget=30)
    finally:
        hook.remove()
    assert len(seen) > 1 and sum(b for b, _ in seen) == 50
    assert all(b * t <= 30 or b == 1 for b, t in seen), seen


def test_chunk_plan_covers_every_prompt_once_within_the_budget():
    lengths = [5, 40, 1, 17, 17, 300, 2, 9] * 30
    chunks = plan_chunks(lengths, batch_size=16, token_budget=64)
    assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))
    assert all(len(c) <= 16 and (len(c) * max(lengths[i] for i in c) <= 64 or len(c) == 1) for c in chunks)


def test_the_allocators_refusal_is_a_fastmem_error(tiny_lab, bank, monkeypatch):
    def refuse(*args, **kw):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(tiny_lab.lm.model, "forward", refuse)
    fails(bank, lambda: tiny_lab.write(bank, [("wug", "game A", "red")]), ResourceError, "more memory")
    fails(bank, lambda: tiny_lab.ask(bank, "what is blicket in game A?"), ResourceError, "more memory")


# -- token limits --------------------------------------------------------------------------------
def test_a_question_over_the_token_limit_is_refused_before_any_work(tiny_lab, bank, monkeypatch):
    question = "what is " + "x " * 600 + "blicket?"  # 1,216 characters (under the 2,000 allowed), 604 tokens
    monkeypatch.setattr(tiny_lab.lm.model, "forward", lambda *a, **k: pytest.fail("a forward pass ran"))
    fails(bank, lambda: tiny_lab.ask(bank, question), BindingError,
          f"is 604 tokens for this model; at most {MAX_TEXT_TOKENS} are read")
    fails(bank, lambda: tiny_lab.ask(bank, tiny_lab.parse_question(question)), BindingError, "tokens")


def test_a_question_at_the_limit_is_answered_and_continued(tiny_lab, bank):
    question = "what is " + "x " * (MAX_TEXT_TOKENS - 4) + "blicket?"
    assert tiny_lab.lm.token_count(tiny_lab.parse_question(question)) == MAX_TEXT_TOKENS
    got = tiny_lab.ask(bank, question, max_new_tokens=40)
    assert isinstance(got.generation, str) and len(got.encoded.ids) <= MAX_TEXT_TOKENS


def test_statements_over_the_token_limit_are_row_errors(tiny_lab, bank):
    before = to_bytes(bank)
    long = "In game A, " + "x " * 600 + "wug means red"
    got = tiny_lab.write_statement(bank, long, "wug", "game A", "red")
    assert got.status == "error" and "tokens for this model" in got.error
    form = "{context} " + "dax " * 60 + "{word} means"  # 270 characters, 62 tokens + its slots
    fails(bank, lambda: tiny_lab.write(bank, [("wug", "game A", "red")], template=form), BindingError,
          f"at most {MAX_FORM_TOKENS} are read")
    assert to_bytes(bank) == before


@pytest.mark.parametrize("form, phrase", [
    ("In {context}, {word} means" + " x" * MAX_FORM, "characters long"), ("In {context},\x00 {word} means", "U+0000"),
    ("In {context}, \u202e{word} means", "U+202E"), ("In {context},\u200b {word} means", "U+200B"),
    (b"In {context}, {word}", "must be text"),
])
def test_bad_custom_forms_are_refused(tiny_lab, bank, form, phrase):
    fails(bank, lambda: tiny_lab.write(bank, [("wug", "game A", "red")], template=form), BindingError, phrase)
    fails(bank, lambda: tiny_lab.preview_statement(form, "wug", "game A", "red"), BindingError, phrase)


def test_a_hieroglyph_form_of_20000_characters_is_refused_at_once(tiny_lab, bank):
    tracemalloc.start()
    try:
        fails(bank, lambda: tiny_lab.write(bank, [("wug", f"game {i}", "red") for i in range(200)],
                                           template="\U00013000" * 20_000 + " {context} {word}"),
              BindingError, "at most 300")
        assert tracemalloc.get_traced_memory()[1] < 5 * 2 ** 20
    finally:
        tracemalloc.stop()


def test_a_file_whose_statement_is_over_the_token_limit_is_refused(tiny_lab, bank):
    meta = json.loads(memory_file.read_header(to_bytes(bank))["manifest"])
    pad = "x " * 600
    meta["entries"][0] = {**meta["entries"][0], "write_text": pad + meta["entries"][0]["write_text"],
                          "word_span": [a + len(pad) for a in meta["entries"][0]["word_span"]],
                          "context_span": [a + len(pad) for a in meta["entries"][0]["context_span"]]}
    data = memory_file.sealed(st_load(to_bytes(bank)), json.dumps(meta))
    with pytest.raises(MemoryFileError, match="tokens for this model"):
        tiny_lab.import_memory(data)


# -- a write that lands can be reopened ----------------------------------------------------------
ODD = ["a\x00b", "a\u202eb", "a\u200bb", "nai\u0308ve", "e\u0301", "\u0301x", "𓀀" * 40, "🙂", "👩\u200d💻", "שלום",
       "مرحبا", "{word}", "a}b", "[[x]]", "q" * 3000, "  dax  ", "a\tb", "a\nb", "\ud800", "x" * 130, "日本語"]


def reopens(lab, bank) -> None:
    data = lab.export_memory(bank)
    assert to_bytes(lab.import_memory(data)) == data


def test_every_write_that_lands_reopens(tiny_lab):
    landed = tried = 0
    for odd in ODD:
        bank = tiny_lab.new_memory()
        attempts = [lambda: tiny_lab.write(bank, [(odd, "game A", "red")]),
                    lambda: tiny_lab.write(bank, [("wug", odd, "red")]),
                    lambda: tiny_lab.write(bank, [("wug", "game A", odd)]),
                    lambda: [tiny_lab.write_statement(bank, f"In game A, {odd} wug means red", "wug", "game A", "red")],
                    lambda: [tiny_lab.write_statement(bank, f"{odd} dax in game A means red", "dax", "game A", "red")],
                    lambda: tiny_lab.write(bank, [("wug", "game A", "red")], template=odd + " {context} {word} is"),
                    lambda: tiny_lab.write(bank, [("wug", "game A", "red")], template="In {context}{word}" + odd)]
        for attempt in attempts:
            tried += 1
            try:
                results = attempt()
            except FastmemError:
                continue
            landed += sum(r.status != "error" for r in results)
            reopens(tiny_lab, bank)
    assert tried == 7 * len(ODD) and landed > 40, landed  # honest: many odd writes do land


# -- the manifest ------------------------------------------------------------------------------
def test_a_manifest_that_could_not_describe_its_rows_is_refused_before_parsing(tiny_lab, bank, monkeypatch):
    """30 million empty lists (86 MB) expand to 2.7 GB in json.loads; 300,000 here for speed (over the size
    bound), then 20,000 (under it: over the count of lists) and 20,000 numbers in one list (over the items)."""
    manifest = json.dumps({"model_name": "x", "entries": [[]] * 300_000}, separators=(",", ":"))
    data = memory_file.sealed(st_load(to_bytes(bank)), manifest)
    assert len(manifest) > 32_768 * len(bank) + 65_536
    real = json.loads

    def loads(text, *args, **kw):
        assert not (isinstance(text, str) and text.startswith('{"model_name":"x"')), "the manifest was parsed"
        return real(text, *args, **kw)

    monkeypatch.setattr(json, "loads", loads)
    tracemalloc.start()
    try:
        fails(bank, lambda: tiny_lab.import_memory(data), MemoryFileError, "cannot be a memory's")
        assert tracemalloc.get_traced_memory()[1] < 20 * 2 ** 20
    finally:
        tracemalloc.stop()
    for entries, phrase in (([[]] * 20_000, "20,002 lists"), ([[0] * 20_000], "20,002 items")):
        small = json.dumps({"model_name": "x", "entries": entries}, separators=(",", ":"))
        assert len(small) < 65_536
        fails(bank, lambda: tiny_lab.import_memory(memory_file.sealed(st_load(to_bytes(bank)), small)),
              MemoryFileError, phrase)


def test_brackets_in_texts_do_not_count_against_a_genuine_file(tiny_lab):
    bank = tiny_lab.new_memory()
    statement = "[" * 900 + " In game A, dax means red " + "[[" * 400
    assert tiny_lab.write_statement(bank, statement, "dax", "game A", "red").status == "added"
    rows = [(f"w{i}", "game [[" + "[" * 100, "red") for i in range(3)]
    assert all(r.status == "added" for r in tiny_lab.write(bank, rows))
    bank.set_enabled(1, False)
    reopens(tiny_lab, bank)
