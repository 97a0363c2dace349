"""Files you can trust: a damaged memory file or share document is refused, never used; exports taken while the
memory is being written are each one version of it; crafted files cannot make an entry answer what it does not
match, hang the next write, or raise anything but the library's own errors."""
import contextlib
import json
import sys
import threading
from dataclasses import replace

import pytest
import torch

from fastmem import MemoryFileError, SettingsError, ShareFileError, ShareView
from fastmem.memory import file as memory_file
from fastmem.memory.file import from_bytes, to_bytes


@pytest.fixture()
def small(tiny_lab):
    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, [("blicket", "game A", "red"), ("dax", "game B", "blue")])
    return bank


def test_every_single_byte_flip_is_refused_or_changes_nothing(tiny_lab, small):
    """Flip each byte of a memory file in turn: the file is refused, or it is the same memory (it exports to the
    very same bytes, so it answers exactly alike). No silent middle."""
    data = tiny_lab.export_memory(small)
    loaded_same = refused = 0
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0xFF
        try:
            got = tiny_lab.import_memory(bytes(flipped))
        except MemoryFileError:
            refused += 1
            continue
        assert tiny_lab.export_memory(got) == data, f"byte {i} changed the memory and was not refused"
        loaded_same += 1
    assert refused + loaded_same == len(data) and refused >= len(data) - 64  # only header padding may pass


def test_a_damaged_share_document_is_refused(tiny_lab, small):
    doc = json.loads(tiny_lab.demo.share(small, ShareView(question="In game A, what is blicket?")))
    tiny_lab.demo.open_share(json.dumps(doc))
    for changed in ({**doc, "view": {**doc["view"], "question": "In game B, what is blicket?"}},
                    {**doc, "model": "other"}, {**doc, "memory": doc["memory"][:-8] + "AAAAAAA="}):
        with pytest.raises(ShareFileError, match="damaged|digest|not valid"):
            tiny_lab.demo.open_share(json.dumps(changed))
    old = {k: v for k, v in doc.items() if k != "sha256"} | {"version": 1}  # version 1: no digest, still opens
    bank, view = tiny_lab.demo.open_share(json.dumps(old))
    assert len(bank) == 2 and view.question.startswith("In game A")


@pytest.mark.parametrize("text", ["[" * 100_000, '{"format": "fastmem-share", "version": ' + "9" * 5000 + "}",
                                  '{"format": "fastmem-share", "version": 2, "model": "m", "memory": "", "view": '
                                  + "[" * 50_000 + "]" * 50_000 + "}"])
def test_share_documents_that_break_a_json_parser_give_a_share_error(tiny_lab, text):
    with pytest.raises(ShareFileError):
        tiny_lab.demo.open_share(text)


@contextlib.contextmanager
def flipping(bank, red, pink):
    """A thread that keeps replacing the first entry (red <-> pink) while the body runs; yields a function giving
    the number of replacements so far. Threads switch every 0.1 ms (CPython's default is 5 ms): with the default, a
    reader that lets go of the GIL (every torch call does) waits a whole interval to get it back from a writer
    that never lets go, and 10,000 exports took 17 minutes instead of seconds."""
    stop, flips = threading.Event(), [0]

    def writer():
        while not stop.is_set():
            bank.add(red)
            bank.add(pink)
            flips[0] += 2

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        yield lambda: flips[0]
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)


def red_and_pink(tiny_lab, small):
    red = small.entries[0]
    tiny_lab.write(small, [("blicket", "game A", "pink")])
    pink = small.entries[0]
    assert not torch.equal(red.value, pink.value)
    return red, pink


def test_exports_while_another_thread_writes_are_each_one_version(tiny_lab, small):
    """2,000 exports while a thread keeps replacing an entry: every file pairs each label with the value written
    with it, and the writes really fell between the exports (both versions seen, many replacements)."""
    red, pink = red_and_pink(tiny_lab, small)
    values, seen, bad = {"red": red.value, "pink": pink.value}, set(), 0
    with flipping(small, red, pink) as flips:
        for _ in range(2_000):
            bank, _ = from_bytes(to_bytes(small))
            e = bank.entries[0]
            seen.add(e.label)
            bad += not torch.equal(e.value, values[e.label])
        replaced = flips()
    assert bad == 0
    assert seen == {"red", "pink"} and replaced >= 2_000, (seen, replaced)


def test_asks_see_one_version_while_another_thread_writes(tiny_lab, small):
    """An ask takes a snapshot: its reason, answer and entry all come from one version of the memory."""
    red, pink = red_and_pink(tiny_lab, small)
    q, seen = tiny_lab.question("blicket", "game A"), set()
    with flipping(small, red, pink) as flips:
        for _ in range(60):
            r = tiny_lab.ask(small, q, alpha=8.0, threshold=None)
            label = "red" if torch.equal(r.value, red.value) else "pink" if torch.equal(r.value, pink.value) else "?"
            assert label in r.reason, (label, r.reason)
            seen.add(label)
        replaced = flips()
    assert seen == {"red", "pink"} and replaced >= 60, (seen, replaced)


def test_crafted_magnitudes_steps_and_texts_are_refused(tiny_lab, small):
    from safetensors.torch import load

    data = tiny_lab.export_memory(small)
    tensors, meta = load(data), json.loads(memory_file.read_header(data)["manifest"])
    huge = {**tensors, "value": torch.full_like(tensors["value"], 3e38)}
    with pytest.raises(MemoryFileError, match="out-of-range"):
        tiny_lab.import_memory(memory_file.sealed(huge, json.dumps(meta)))
    for changes, phrase in (({"value_steps": 10 ** 9}, "(?i)value steps"),
                            ({"entries": [{**meta["entries"][0], "label": "purple"}, meta["entries"][1]]},
                             "not that label's tokens|not in this model's vocabulary"),
                            ({"entries": [{**meta["entries"][0], "word": "\x00\x00"}, meta["entries"][1]]},
                             "control"),
                            ({"entries": [{**meta["entries"][0], "word": "blicke\u0301t"}, meta["entries"][1]]},
                             "as it would be typed"),
                            ({"projector_id": "projector-L3-r256-0"}, "does not know")):
        crafted = memory_file.sealed(tensors, json.dumps({**meta, **changes}))
        with pytest.raises(MemoryFileError, match=phrase):
            tiny_lab.import_memory(crafted)


def test_legacy_files_with_crafted_keys_cannot_answer_everything(tiny_lab, small):
    keys = {f: small.stacked()[f].clone() for f in ("key", "context_key", "symbol_key", "word_tokens",
                                                    "context_tokens")}
    keys["word_tokens"][:] = 3e38
    with pytest.raises(MemoryFileError, match="out-of-range"):
        from_bytes(memory_file.write_legacy(small, "2", keys))


def test_too_many_entries_are_refused_before_any_work(tiny_lab, small, monkeypatch):
    data = tiny_lab.export_memory(small)
    monkeypatch.setattr(memory_file, "MAX_ENTRIES", 1)

    def no_entry(**fields):
        raise AssertionError(f"an entry was built before the count was checked: {fields['word']!r}")

    monkeypatch.setattr(memory_file, "MemoryEntry", no_entry)
    with pytest.raises(MemoryFileError, match="at most 1 are read"):
        tiny_lab.import_memory(data)


def test_questions_are_normalised_like_written_fields(tiny_lab, small):
    import unicodedata

    written = tiny_lab.ask(small, tiny_lab.key_question("in game A , what is blicket ?").prompt)
    nfd = unicodedata.normalize("NFD", "in game A , what is blicket ?")
    assert tiny_lab.ask(small, tiny_lab.key_question(nfd).prompt).chosen == written.chosen
    for invisible in ("\ufeff", "\u200b"):
        with pytest.raises(Exception, match="invisible"):
            tiny_lab.key_question(f"in game A , what is {invisible}blicket ?")


def test_an_enormous_alpha_is_a_settings_error(tiny_lab, small):
    with pytest.raises(SettingsError, match="Alpha"):
        tiny_lab.ask(small, tiny_lab.question("blicket", "game A"), alpha=10 ** 400)


def test_a_snapshot_is_read_only_and_keeps_its_version(small):
    view = small.snapshot()
    small.clear()
    assert len(view) == 2 and len(small) == 0
    with pytest.raises(Exception, match="read-only"):
        view.add(replace(view.entries[0]))


@pytest.mark.parametrize("space", ["\u00a0", "\u2009", "\u3000", "\t", "\n", "  ", " \r\n "])
def test_any_space_tab_or_line_break_between_words_reads_as_a_space(tiny_lab, small, space):
    """Issue: a question with a non-breaking space, a tab or a line break between words missed silently."""
    plain = tiny_lab.ask(small, "What does blicket mean in game A?")
    spaced = tiny_lab.ask(small, f"What does blicket{space}mean in game{space}A?")
    assert plain.chosen >= 0 and spaced.chosen == plain.chosen and spaced.answer_ids == plain.answer_ids


@pytest.mark.parametrize("mark", ["\u0301", "\ufe0f", "\u0308"])
def test_a_combining_mark_after_the_word_makes_another_word(tiny_lab, small, mark):
    """`blicket` + a combining accent or a variation selector is not `blicket` (consistently: no span ends
    inside a letter and its marks)."""
    assert tiny_lab.ask(small, "What does blicket mean in game A?").chosen >= 0
    assert tiny_lab.ask(small, f"What does blicket{mark} mean in game A?").chosen == -1
