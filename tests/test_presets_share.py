"""Preset scenarios and the share document: pure checks, then Lab's demo tools on the tiny model."""
import base64
import json

import pytest

from fastmem import FastmemError
from fastmem.demo.presets import PRESETS, get_preset
from fastmem.demo.share import ShareFileError, ShareView, dump_share, memory_bytes, parse_share, share_digest


def test_presets_are_complete():
    assert set(PRESETS) == {"blicket", "conflicts", "failures"}
    blicket = PRESETS["blicket"]
    assert set(blicket.rows) == {("blicket", "game A", "red"), ("blicket", "game B", "blue")}
    conflicts = PRESETS["conflicts"]
    words = {w for w, _, _ in conflicts.rows}
    assert len(words) >= 2
    for w in words:  # every word bound differently in two contexts
        bound = {(c, lab) for ww, c, lab in conflicts.rows if ww == w}
        assert len({c for c, _ in bound}) == 2 and len({lab for _, lab in bound}) == 2
    failures = PRESETS["failures"]
    written = {(w, c) for w, c, _ in failures.rows}
    silent = [q for q in failures.questions if not q.expect]
    assert any(q.context is None for q in silent)  # context-free
    assert any(q.word not in {w for w, _ in written} for q in silent)  # look-alike
    assert any(q.context is not None and q.word in {w for w, _ in written}
               and (q.word, q.context) not in written for q in silent)  # wrong context
    for p in PRESETS.values():
        assert p.description and p.questions
        for q in p.questions:
            assert not q.expect or (q.word, q.context, q.expect) in p.rows
    with pytest.raises(FastmemError, match="Unknown preset"):
        get_preset("nope")
    with pytest.raises(Exception):
        blicket.rows = ()  # frozen


def test_share_round_trip_and_defaults():
    view = ShareView(mode="raw_both_top1", alpha=2.5, threshold=None,
                     question="Question: in game A, what is x? Answer:", mark_word="x", mark_context="game A")
    text = dump_share(b"\x00memory\xff", "m", view)
    doc = parse_share(text.encode())
    assert doc.version == 2 and doc.format == "fastmem-share" and doc.model == "m"
    assert doc.view == view and memory_bytes(doc) == b"\x00memory\xff"
    assert parse_share(dump_share(b"", "m", ShareView())).view.threshold == "default"


@pytest.mark.parametrize("data, message", [
    (b"\xff\xfe", "not UTF-8"),
    ("{not json", "invalid JSON"),
    ("[1, 2]", "not a fastmem share"),
    ('{"format": "other"}', "not a fastmem share"),
    ('{"format": "fastmem-share", "version": 3, "model": "m", "memory": ""}', "version 3 is not supported"),
    ('{"format": "fastmem-share", "version": 2, "model": "m", "memory": ""}', "do not match its SHA-256"),
    ('{"format": "fastmem-share", "version": 1, "memory": ""}', "model"),
    ('{"format": "fastmem-share", "version": 1, "model": "m", "memory": "", "view": {"alpha": "x"}}', "view.alpha"),
    ('{"format": "fastmem-share", "version": 1, "model": "m", "memory": "", "extra": 1}', "extra"),
    ('{"format": "fastmem-share", "version": 1, "model": "m", "memory": "", "view": {"threshold": "high"}}',
     "view.threshold"),
])
def test_bad_share_documents_give_clear_errors(data, message):
    with pytest.raises(ShareFileError, match=message):
        parse_share(data)


def test_bad_base64():
    doc = parse_share(json.dumps({"format": "fastmem-share", "version": 1, "model": "m", "memory": "@@@"}))
    with pytest.raises(ShareFileError, match="base64"):
        memory_bytes(doc)


def test_lab_preset_and_share_on_tiny_model(tiny_lab):
    lab = tiny_lab
    bank = lab.new_memory()
    lab.write(bank, [("dax", "game A", "green")])
    results = lab.demo.load_preset(bank, "blicket")
    assert [r.status for r in results] == ["added", "added"]
    assert [e.slot for e in bank.entries] == [("blicket", "game A"), ("blicket", "game B")]  # replaced
    questions = lab.demo.preset_questions("failures")
    assert [p.text for _, p in questions][-1] == lab.question("blicket").text
    bank.set_enabled(1, False)

    view = ShareView(mode="dual_key", alpha=3.0, threshold=0.4, question=questions[0][1].text)
    text = lab.demo.share(bank, view)
    again, got = lab.demo.open_share(text)
    assert got == view
    assert [e.slot for e in again.entries] == [e.slot for e in bank.entries]
    assert again.disabled == {("blicket", "game B")}
    assert all((a.value == b.value).all() for a, b in zip(again.entries, bank.entries))


def test_lab_open_share_refuses_what_does_not_fit(tiny_lab):
    lab = tiny_lab
    bank = lab.new_memory()
    lab.write(bank, [("blicket", "game A", "red")])
    good = json.loads(lab.demo.share(bank, ShareView()))

    def resealed(doc):  # a share whose digest matches its (bad) contents: the checks behind the digest
        view = ShareView.model_construct(**doc["view"])
        return json.dumps({**doc, "sha256": share_digest(doc["model"], doc["memory"], view)})

    bad_mode = {**good, "view": {**good["view"], "mode": "telepathy"}}
    with pytest.raises(ShareFileError, match="mode"):
        lab.demo.open_share(resealed(bad_mode))
    bad_alpha = {**good, "view": {**good["view"], "alpha": -5}}
    with pytest.raises(ShareFileError):
        lab.demo.open_share(resealed(bad_alpha))
    with pytest.raises(ShareFileError, match="SHA-256"):
        lab.demo.open_share(json.dumps(bad_mode))  # changed without a new digest: damaged
    broken = {**good, "memory": base64.b64encode(b"not a memory file").decode()}
    with pytest.raises(FastmemError):
        lab.demo.open_share(json.dumps(broken))
