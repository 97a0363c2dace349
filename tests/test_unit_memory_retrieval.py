"""Memory files and duplicate policy; retrieval modes on a hand-built bank with known geometry."""
import pytest
import torch
import torch.nn.functional as F

from fastmem.errors import BindingError
from fastmem.memory.bank import MemoryBank, MemoryEntry
from fastmem.memory.projector import KeyProjector, ProjectorConfig
from fastmem.memory import engine
from fastmem.memory.modes import Query, get_mode
from fastmem.memory.retrieval import KeyGeometry, QueryKeys
from fastmem.memory.file import from_bytes, to_bytes

D = 8

def retrieve(mode, keys, bank, geometry, threshold=None):
    """Retrieval from a question's keys alone (the modes that read slots need no model)."""
    return engine.retrieve(mode, Query(keys, bank, geometry), threshold)



def e(i: int) -> torch.Tensor:
    return torch.eye(D)[i]


def entry(word, context, label, label_id, key, context_key, symbol_key, value, span=True):
    text = f"In {context}, {word} means"
    start = text.index(word)
    return MemoryEntry(word, context, label, label_id, text, (start, start + len(word)),
                       (3, 3 + len(context)) if span else None, value, key=key, context_key=context_key,
                       symbol_key=symbol_key)


def hand_bank() -> MemoryBank:
    """0: dax/game A, 1: dax/game B, 2: wug/game A. Word keys e0, e0+.5e1, e2; symbol keys e4 (dax), e5 (wug);
    context keys e6 (game A), e7 (game B); values 10*e_i distinct."""
    bank = MemoryBank("tiny", D, key_layer=2, context_layer=1, symbol_layer=1, value_steps=1)
    bank.add(entry("dax", "game A", "red", 11, e(0), e(6), e(4), 10 * e(0)))
    bank.add(entry("dax", "game B", "cat", 12, e(0) + 0.5 * e(1), e(7), e(4), 10 * e(1)))
    bank.add(entry("wug", "game A", "fish", 13, e(2), e(6), e(5), 10 * e(2)))
    return bank


def identity_geometry(dual_baselines=None) -> KeyGeometry:
    proj = KeyProjector(ProjectorConfig(D, layer=2, rank=D))
    with torch.no_grad():
        proj.linear.weight.copy_(torch.eye(D))
    zero = torch.zeros(D)
    sym, ctx = dual_baselines or (zero, zero)
    return KeyGeometry(proj.eval().requires_grad_(False), sym, ctx)


def query(keys, symbols=None, contexts_keys=None, contexts=None):
    keys = torch.stack(keys)
    n = len(keys)
    return QueryKeys(keys, torch.stack(symbols) if symbols else torch.zeros(n, D),
                     torch.stack(contexts_keys) if contexts_keys else torch.zeros(n, D),
                     tuple(contexts or [None] * n))


# -- memory ------------------------------------------------------------------------------------
def test_memory_bytes_round_trip_is_exact():
    g = torch.Generator().manual_seed(0)
    bank = MemoryBank("tiny-model", D, 3, 1, 2, 32)
    for i, (w, c, label) in enumerate([("blicket", "game A", "red"), ("dax", "the north lab", "cat"),
                                       ("wug", "game B", "fish")]):
        bank.add(entry(w, c, label, 100 + i, *(torch.randn(D, generator=g) for _ in range(4)), span=i != 1))
    data = to_bytes(bank)
    back, notes = from_bytes(data, expect_hidden_size=D)
    assert notes == [] and to_bytes(back) == data
    for f in ("model_name", "hidden_size", "key_layer", "context_layer", "symbol_layer", "value_steps"):
        assert getattr(back, f) == getattr(bank, f)
    assert len(back) == len(bank)
    for a, b in zip(bank.entries, back.entries):
        for f in ("word", "context", "label", "label_id", "write_text", "word_span", "context_span"):
            assert getattr(a, f) == getattr(b, f), f
        assert torch.equal(a.value, b.value) and b.key is None  # keys: read again from write_text when needed
    assert back.entries[1].context_span is None
    # empty memory too
    empty, notes = from_bytes(to_bytes(MemoryBank("m", D, 1, 1, 1, 1)))
    assert len(empty) == 0 and notes == [] and empty.hidden_size == D


def test_duplicate_policy_replace_and_keep():
    bank = hand_bank()
    new = entry("dax", "game A", "green", 99, e(3), e(6), e(4), 5 * e(3))
    stacked_before = bank.stacked()["value"].clone()
    assert bank.add(new, on_duplicate="keep") == "kept"
    assert len(bank) == 3 and bank.entries[0].label == "red"
    assert torch.equal(bank.stacked()["value"], stacked_before)
    assert bank.add(new, on_duplicate="replace") == "replaced"
    assert len(bank) == 3 and bank.entries[0].label == "green" and bank.find("dax", "game A") == 0
    assert torch.equal(bank.stacked()["value"][0], 5 * e(3))  # the cache was refreshed
    with pytest.raises(BindingError):
        bank.add(new, on_duplicate="error")
    assert bank.add(entry("dax", "game C", "cow", 7, e(3), e(6), e(4), e(3))) == "added"
    assert len(bank) == 4


# -- retrieval ----------------------------------------------------------------------------------
def test_raw_top1_picks_the_most_similar_word_key():
    bank, geo = hand_bank(), identity_geometry()
    q = query([e(0), e(2), e(0) + e(1)])
    got = retrieve("raw_both_top1", q, bank, geo)
    assert got.chosen.tolist() == [0, 2, 1]
    torch.testing.assert_close(got.scores, F.normalize(q.key, dim=-1) @ F.normalize(bank.stacked()["key"], dim=-1).T)
    assert torch.equal(got.values, bank.stacked()["value"][[0, 2, 1]])


def test_threshold_switches_injection_off():
    bank, geo = hand_bank(), identity_geometry()
    q = query([e(3) + 0.1 * e(0), e(0)])
    free = retrieve("raw_both_top1", q, bank, geo, threshold=None)
    assert free.chosen.tolist() == [0, 0] and free.best[0] < 0.5
    gated = retrieve("raw_both_top1", q, bank, geo, threshold=0.5)
    assert gated.chosen.tolist() == [-1, 0]
    assert torch.equal(gated.values[0], torch.zeros(D))
    assert torch.equal(gated.values[1], bank.stacked()["value"][0])


def test_context_gate_restricts_to_the_question_context():
    bank, geo = hand_bank(), identity_geometry()
    q = query([e(0), e(0), e(0)], contexts=["game B", "game A", None])
    got = retrieve("context_gate", q, bank, geo)
    assert got.chosen.tolist() == [1, 0, -1]  # raw top-1 for row 0 would be entry 0
    assert torch.isinf(got.scores[0, [0, 2]]).all() and torch.isfinite(got.scores[0, 1])
    assert torch.isinf(got.scores[2]).all() and torch.isinf(got.best[2])
    assert torch.equal(got.values[2], torch.zeros(D))


def test_average_mixes_the_values_of_the_same_word():
    bank, geo = hand_bank(), identity_geometry()
    got = retrieve("average", query([e(0), e(2)]), bank, geo)
    assert got.chosen.tolist() == [0, 2]
    values = bank.stacked()["value"]
    torch.testing.assert_close(got.values[0], (values[0] + values[1]) / 2)
    torch.testing.assert_close(got.values[1], values[2])


def test_both_top1_uses_projected_keys():
    bank, geo = hand_bank(), identity_geometry()
    got = retrieve("both_top1", query([e(0) + e(1), e(2)]), bank, geo)
    assert got.chosen.tolist() == [1, 2]


def test_dual_key_is_the_product_of_symbol_and_context_similarity():
    bank, geo = hand_bank(), identity_geometry()
    q = query([e(3), e(3), e(3)], symbols=[e(4), e(4), e(5)], contexts_keys=[e(7), e(6), e(7)])
    got = retrieve("dual_key", q, bank, geo)
    # dax in game B; dax in game A; wug has no game-B entry: every product is 0 but wug/game A ties at 0
    assert got.chosen[:2].tolist() == [1, 0]
    assert torch.equal(got.scores[0], torch.tensor([0.0, 1.0, 0.0]))
    assert torch.equal(got.scores[1], torch.tensor([1.0, 0.0, 0.0]))
    assert got.best[2] == 0.0
    assert retrieve("dual_key", q, bank, geo, threshold=0.5).chosen.tolist() == [1, 0, -1]


def test_dual_key_scores_are_relative_to_the_baselines():
    g = torch.Generator().manual_seed(1)
    sym_b, ctx_b = torch.randn(D, generator=g), torch.randn(D, generator=g)
    bank, geo = hand_bank(), identity_geometry((sym_b, ctx_b))
    q = QueryKeys(torch.randn(4, D, generator=g), torch.randn(4, D, generator=g), torch.randn(4, D, generator=g),
                  (None,) * 4)
    st = bank.stacked()

    def cos(a, b):
        return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T

    expected = (cos(q.symbol - sym_b, st["symbol_key"] - sym_b).clamp(min=0)
                * cos(q.context - ctx_b, st["context_key"] - ctx_b).clamp(min=0))
    torch.testing.assert_close(get_mode("dual_key").score(Query(q, bank, geo)).scores, expected)


@pytest.mark.parametrize("mode", ["none", "both_top1", "context_gate", "raw_both_top1", "average", "dual_key"])
def test_empty_memory_and_mode_none_inject_nothing(mode):
    geo = identity_geometry()
    q = query([e(0), e(2)], contexts=["game A", "game A"])
    empty = retrieve(mode, q, MemoryBank("tiny", D, 2, 1, 1, 1), geo)
    assert empty.chosen.tolist() == [-1, -1]
    assert torch.equal(empty.values, torch.zeros(2, D))
    if mode == "none":
        got = retrieve(mode, q, hand_bank(), geo)
        assert got.chosen.tolist() == [-1, -1] and torch.equal(got.values, torch.zeros(2, D))
