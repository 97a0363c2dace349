"""Selectivity: token matching, the threshold-off rule, switched-off entries, memory files with token keys,
and the new metrics on the tiny model, where a memory built to fire wrongly must score badly."""

import pytest
import torch
import torch.nn.functional as F

import fastmem.eval.probesets as probesets_mod
from fastmem.lab import Lab
from fastmem.memory import file as memory_file
from fastmem.eval.bench import run_bench
from fastmem.eval.calibrate import ModeSettings, calibrate
from fastmem.eval.calibration_cache import cache_key
from fastmem.memory.bank import MemoryBank, MemoryEntry
from fastmem.eval.metrics import LabelIndex, hit_mask, probe_set
from fastmem.memory.prompts import render
from fastmem.memory import engine
from fastmem.memory.modes import Query
from fastmem.memory.retrieval import KeyGeometry, QueryKeys
from fastmem.memory.token_match import match_tokens
from fastmem.eval.suite import make_builtin_suite
from test_unit_memory_retrieval import hand_bank, identity_geometry, query
from fastmem.memory.file import from_bytes, to_bytes

D = 8

def retrieve(mode, keys, bank, geometry, threshold=None):
    """Retrieval from a question's keys alone (the modes that read slots need no model)."""
    return engine.retrieve(mode, Query(keys, bank, geometry), threshold)



def e(i: int) -> torch.Tensor:
    return torch.eye(D)[i]


# -- token matching ------------------------------------------------------------------------------
def match(query_tokens, entry_token_sets):
    q = torch.stack(query_tokens).unsqueeze(0)
    flat = torch.cat([torch.stack(t) for t in entry_token_sets])
    owner = torch.repeat_interleave(torch.arange(len(entry_token_sets)),
                                    torch.tensor([len(t) for t in entry_token_sets]))
    return match_tokens(F.normalize(q, dim=-1), torch.ones(1, len(query_tokens), dtype=torch.bool),
                        F.normalize(flat, dim=-1), owner, len(entry_token_sets))[0]


def test_every_token_must_match_on_both_sides():
    written = [[e(0), e(1)]]  # a two-token word
    assert match([e(0), e(1)], written).item() == pytest.approx(1.0)
    assert match([e(1), e(0)], written).item() == pytest.approx(1.0)  # a set: order-free
    assert match([e(0), e(2)], written).item() == pytest.approx(0.0)  # same start, other end: a look-alike
    assert match([e(0)], written).item() == pytest.approx(0.0)  # a written token left unmatched
    assert match([e(0), e(1), e(2)], written).item() == pytest.approx(0.0)  # an extra token unmatched
    close = F.normalize(e(1) + 0.2 * e(3), dim=0)
    assert match([e(0), close], written).item() == pytest.approx(float(close[1]), abs=1e-5)  # the worst token


def token_bank() -> MemoryBank:
    """dax (tokens e0 e1) in game A (e4 e5) and in game B (e4 e6); wug (e2) in game A."""
    bank = MemoryBank("tiny", D, 1, 1, 1, 1, token_layer=1)
    for word, ctx, label, lid, wt, ct in (("dax", "game A", "red", 11, [e(0), e(1)], [e(4), e(5)]),
                                          ("dax", "game B", "cat", 12, [e(0), e(1)], [e(4), e(6)]),
                                          ("wug", "game A", "fish", 13, [e(2)], [e(4), e(5)])):
        text = f"In {ctx}, {word} means"
        bank.add(MemoryEntry(word, ctx, label, lid, text, (text.index(word), text.index(word) + len(word)),
                             (3, 3 + len(ctx)), 10 * e(lid - 11), key=e(0), context_key=e(0), symbol_key=e(0),
                             word_tokens=torch.stack(wt), context_tokens=torch.stack(ct)))
    return bank


def token_query(words, contexts):
    def pad(sets):
        t = max(len(s) for s in sets)
        x = torch.zeros(len(sets), t, D)
        m = torch.zeros(len(sets), t, dtype=torch.bool)
        for i, s in enumerate(sets):
            x[i, :len(s)] = torch.stack(s)
            m[i, :len(s)] = True
        return x, m
    n = len(words)
    return QueryKeys(torch.zeros(n, D), torch.zeros(n, D), torch.zeros(n, D), (None,) * n, pad(words), pad(contexts))


def token_geometry() -> KeyGeometry:
    zero = torch.zeros(D)
    return KeyGeometry(None, zero, zero, zero, torch.ones(D))


def test_token_match_answers_only_the_written_word_in_the_written_context():
    bank, geo = token_bank(), token_geometry()
    q = token_query([[e(0), e(1)], [e(0), e(1)], [e(0), e(1)], [e(0), e(3)], [e(0), e(1)]],
                    [[e(4), e(5)], [e(4), e(6)], [e(4), e(7)], [e(4), e(5)], [e(2), e(3)]])
    got = retrieve("token_match", q, bank, geo, threshold=0.5)
    # written A, written B, never-written context, look-alike word, no context phrase
    assert got.chosen.tolist() == [0, 1, -1, -1, -1]
    assert got.best[0].item() == pytest.approx(1.0)


def test_threshold_off_means_top1_among_positive_scores():
    bank, geo = hand_bank(), identity_geometry()
    q = query([e(3), e(0)])  # e3 is orthogonal to every key: all scores are exactly 0
    got = retrieve("raw_both_top1", q, bank, geo, threshold=None)
    assert got.best[0].item() == 0.0
    assert got.chosen.tolist() == [-1, 0]
    assert torch.equal(got.values[0], torch.zeros(D))
    tq = token_query([[e(7)]], [[e(7)]])  # token_match with nothing in common: nothing injected
    assert retrieve("token_match", tq, token_bank(), token_geometry(), threshold=None).chosen.tolist() == [-1]


def test_switched_off_entries_are_never_retrieved_and_survive_a_file_round_trip():
    bank, geo = token_bank(), token_geometry()
    q = token_query([[e(0), e(1)]], [[e(4), e(5)]])
    assert retrieve("token_match", q, bank, geo, threshold=0.5).chosen.tolist() == [0]
    bank.set_enabled(0, False)
    assert not bank.is_enabled(0) and bank.is_enabled(1)
    assert retrieve("token_match", q, bank, geo, threshold=0.5).chosen.tolist() == [-1]
    again, _ = from_bytes(to_bytes(bank))
    assert again.disabled == {("dax", "game A")}
    again = again.with_keys({f: [getattr(x, f) for x in bank.entries] for f in ("word_tokens", "context_tokens")})
    assert retrieve("token_match", q, again, geo, threshold=0.5).chosen.tolist() == [-1]
    bank.set_enabled(0, True)
    assert retrieve("token_match", q, bank, geo, threshold=0.5).chosen.tolist() == [0]


def test_a_memory_file_holds_values_and_what_was_written_and_old_versions_still_load():
    bank = token_bank()
    data = to_bytes(bank)
    again, notes = from_bytes(data)
    assert not notes and to_bytes(again) == data  # checked by its digest; the same bytes again
    for a, b in zip(bank.entries, again.entries):
        assert torch.equal(a.value, b.value) and (a.word, a.context, a.label, a.write_text) == (
            b.word, b.context, b.label, b.write_text)
        assert b.key is None and b.word_tokens is None  # keys are read again from the statement when needed
    old = hand_bank()  # a version-1 file: dense keys beside the values, no token keys, no digest
    v1 = memory_file.write_legacy(old, "1", {f: old.stacked()[f] for f in ("key", "context_key", "symbol_key")})
    loaded, notes = from_bytes(v1)
    assert loaded.token_layer == -1 and len(loaded) == 3 and loaded.entries[0].word_tokens is None
    assert torch.equal(loaded.entries[1].key, old.entries[1].key) and "no digest" in notes[0]


def test_slot_lookup_follows_adds_and_removals():
    bank = token_bank()
    assert bank.find("dax", "game B") == 1 and bank.find("wug", "game A") == 2
    bank.remove(0)
    assert bank.find("dax", "game A") is None and bank.find("dax", "game B") == 0 and bank.find("wug", "game A") == 1


# -- metrics -------------------------------------------------------------------------------------
class IdsLM:
    """Just what the hit rules ask of a model: a label's tokens, and the text of tokens (one word per id)."""

    def __init__(self, label_ids=None):
        self.label_tokens = label_ids
        self.tokenizer = self

    @staticmethod
    def decode(ids):
        return "".join(f" w{int(i)}" for i in ids)


def test_hit_rules():
    bank = token_bank()
    labels = LabelIndex.of(bank)
    p = render("Question: in {context}, what is {word}? Answer:", "dax", "game Z")
    ids = torch.tensor([11, 13, 5])
    base = torch.tensor([11, 7, 5])
    wrong = probe_set("wrong_context", [p] * 3, ["dax"] * 3)
    assert hit_mask(wrong, ids, base, labels, IdsLM()).tolist() == [True, False, False]  # only dax's labels count
    look = probe_set("lookalike", [p] * 3)
    assert hit_mask(look, ids, base, labels, IdsLM()).tolist() == [True, True, False]  # any label in memory
    kept = probe_set("kept", [p] * 3, ["x"] * 3, [None] * 3)
    assert hit_mask(kept, ids, base, labels, IdsLM()).tolist() == [True, False, True]
    read = probe_set("paraphrase:context_after", [p] * 3, ["red", "fish", "cat"])
    lid = {"red": (11,), "fish": (13,), "cat": (12,)}.get
    assert hit_mask(read, ids, base, labels, IdsLM(lid)).tolist() == [True, True, False]


def test_hit_rules_on_label_sequences():
    """A label of several tokens is hit only when the answer starts with all of them; -1 is not decoded."""
    labels = LabelIndex({"dax": frozenset({(11, 12)})}, frozenset({(11, 12), (13,)}))
    p = render("Question: in {context}, what is {word}? Answer:", "dax", "game Z")
    ids = torch.tensor([[11, 12, 5], [11, 5, 12], [13, -1, -1], [11, -1, -1]])
    base = torch.tensor([[11, 12, 5], [11, 12, 5], [7, -1, -1], [11, -1, -1]])
    read = probe_set("read", [p] * 4, ["a b", "a b", "c", "a b"])
    lid = {"a b": (11, 12), "c": (13,)}.get
    assert hit_mask(read, ids, base, labels, IdsLM(lid)).tolist() == [True, False, True, False]
    # the same text counts as the label: a token that reads ` A b` (or `a B`, stripped) is the label `a b`
    spelled = IdsLM(lid)
    spelled.decode = lambda ids: {(11, 12): " a b", (14, 12): "A b", (14, 15): "ab"}.get(tuple(ids), " x")
    other = torch.tensor([[14, 12, 5], [14, 15, 5]])
    assert hit_mask(probe_set("read", [p] * 2, ["a b"] * 2), other, other, labels, spelled).tolist() == [True, False]
    assert hit_mask(probe_set("wrong_context", [p] * 4, ["dax"] * 4), ids, base, labels, IdsLM(lid)).tolist() == \
        [True, False, False, False]
    assert hit_mask(probe_set("lookalike", [p] * 4), ids, base, labels, IdsLM(lid)).tolist() == [True, False, True, False]
    assert hit_mask(probe_set("kept", [p] * 4, ["x"] * 4, [None] * 4), ids, base, labels, IdsLM(lid)).tolist() == \
        [True, False, False, True]


@pytest.fixture(scope="module")
def small_suite():
    return make_builtin_suite(n_train=16, n_test=8)


@pytest.fixture(scope="module")
def calibrated(neox, small_suite):
    return calibrate(neox, small_suite, value_steps=4, seed=0, show_progress=False)


def by_metric(rows, mode):
    return {r.metric: r for r in rows if r.mode == mode}


def test_a_memory_that_fires_on_everything_scores_badly(neox, small_suite, calibrated, monkeypatch):
    """raw_both_top1 with a huge alpha and no threshold fires on any question: the hard negatives must say so,
    and the selective default must not."""
    cal, geometry = calibrated
    loud = cal.__class__(**{**cal.__dict__, "points": {p: {**modes, "raw_both_top1": ModeSettings(200.0, None)}
                                                       for p, modes in cal.points.items()}})
    # every fact counts as answered right by the random model, so `kept` measures unchanged answers
    monkeypatch.setattr(probesets_mod, "answer_matches", lambda tok, i, a: True)
    rows, _ = run_bench(Lab(neox, loud, geometry), small_suite, experiments=["same game A/B"],
                        modes=["none", "raw_both_top1", "span_match"], words_per_experiment=4)
    bad, good, none = by_metric(rows, "raw_both_top1"), by_metric(rows, "span_match"), by_metric(rows, "none")
    assert bad["wrong_context"].rate >= 0.5 and bad["lookalike"].rate >= 0.5 and bad["plain"].rate >= 0.5
    assert bad["kept"].n > 0 and bad["kept"].rate <= 0.5 and bad["unrelated"].rate >= 0.5
    assert good["wrong_context"].rate <= 0.1 and good["lookalike"].rate <= 0.1 and good["plain"].rate == 0.0
    assert good["kept"].rate >= 0.9
    assert none["kept"].rate == 1.0 and none["wrong_context"].rate == 0.0
    for metric in (m for m in none if m.startswith("paraphrase:")):  # nothing written is nothing read
        assert none[metric].rate == 0.0 and none[metric].n == 8


# -- calibration sees training data only ----------------------------------------------------------
def test_calibration_never_sees_a_test_word_test_question_unseen_context_or_fact(neox, small_suite, monkeypatch):
    from fastmem.eval.probes import fact_pool

    seen = []
    real = neox.states

    def spy(prompts, *args, **kwargs):
        seen.extend(p.text for p in prompts)
        return real(prompts, *args, **kwargs)

    monkeypatch.setattr(neox, "states", spy)
    suite = small_suite.model_copy(update={"train_unrelated": []})  # no training negatives: no fallback to test
    calibrate(neox, suite, value_steps=2, seed=0, show_progress=False)
    assert seen
    text = "\n".join(seen)
    words = set(text.replace(",", " ").replace("?", " ").split())
    assert not words & {w.word for w in suite.split("test")}
    assert not set(seen) & set(suite.unrelated)
    assert not set(seen) & {f.prompt for f in fact_pool()}
    assert not any(c in text for c in suite.unseen_contexts)
    assert not any(c in text for e in suite.experiments if not e.train for c in e.contexts)


def test_calibration_cache_key_covers_what_calibration_reads(neox, small_suite):
    key = cache_key(neox, small_suite, 8, 0)
    assert cache_key(neox, small_suite.model_copy(update={"train_unseen_contexts": ["game P", "club W"]}), 8, 0) != key
    assert cache_key(neox, small_suite.model_copy(update={"train_unrelated": []}), 8, 0) != key
    assert cache_key(neox, small_suite, 8, 1) != key and cache_key(neox, small_suite, 4, 0) != key
    assert cache_key(neox, small_suite.model_copy(update={"unrelated": ["Question: why? Answer:"]}), 8, 0) == key


def test_calibration_cache_key_follows_forms_and_phrasings_without_a_list_to_keep(neox, small_suite, monkeypatch):
    """What calibration runs: its prompts as keyed, so a new paraphrase or built-in phrasing that keys a training
    question differently changes the key (the code itself is covered by CALIBRATION_VERSION and the reference
    summary, tests/test_unit_calibration_reference.py)."""
    from fastmem.eval.suite import ParaphraseSpec

    key = cache_key(neox, small_suite, 8, 0)
    # a form that matches a training question (`Question: what is the capital of Germany? Answer:`)
    form = "Question: what is the {context} of {word}? Answer:"
    para = small_suite.model_copy(update={"paraphrases": list(small_suite.paraphrases)
                                          + [ParaphraseSpec(name="capital", read=form)]})
    assert cache_key(neox, para, 8, 0) != key
    from fastmem.memory import forms

    monkeypatch.setattr(forms, "PHRASINGS", forms.PHRASINGS + (forms.Phrasing("capital", "{word} in {context} means",
                                                                                form),))
    assert cache_key(neox, small_suite, 8, 0) != key
    monkeypatch.undo()
    assert cache_key(neox, small_suite, 8, 0) == key


def test_keys_are_read_again_from_the_statements_when_a_mode_needs_them_and_answer_the_same(tiny_lab):
    """A version-1 file (keys at its own layers, no token keys) and a version-4 file (no keys at all): asked in a
    mode that reads keys, the memory reads them again from its statements, and answers as the written one."""
    from fastmem.memory.engine import ensure_keys

    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, [("dax", "game A", "red"), ("dax", "game B", "blue")])
    v1 = memory_file.write_legacy(bank, "1", {f: bank.stacked()[f] for f in ("key", "context_key", "symbol_key")})
    for again in (tiny_lab.import_memory(v1), tiny_lab.import_memory(tiny_lab.export_memory(bank))):
        assert again.token_layer == tiny_lab.calibration.token_layer and again.entries[0].word_tokens is None
        ensure_keys(tiny_lab.lm, again, ("word_tokens", "context_tokens", "key"))
        for a, b in zip(bank.entries, again.entries):
            torch.testing.assert_close(a.word_tokens, b.word_tokens)
            torch.testing.assert_close(a.context_tokens, b.context_tokens)
            torch.testing.assert_close(a.key, b.key)
            assert torch.equal(a.value, b.value)
        for mode in ("token_match", "dual_key", "span_match"):
            for ctx in ("game A", "game B", "game Z"):
                q = tiny_lab.question("dax", ctx)
                assert tiny_lab.ask(again, q, mode=mode).chosen == tiny_lab.ask(bank, q, mode=mode).chosen


def test_the_entry_is_chosen_by_both_matches_and_gated_by_the_weaker():
    """Word-first questions: the word matches the wrong context's entry a hair better; the context decides."""
    bank, geo = token_bank(), token_geometry()
    word = F.normalize(e(0) + 0.6 * e(2), dim=0)  # a weak word match (0.86) to both dax entries
    from dataclasses import replace

    bank.add(replace(bank.entries[1], word_tokens=torch.stack([e(0) + 0.01 * e(2), e(1)]),
                     context_tokens=torch.stack([e(4), e(5) + 0.5 * e(6)])))  # replaces dax in game B
    # dax in game B: its word states differ slightly, its context is close to game A (0.89) but not the same;
    # the weaker-match score alone would pick it (min 0.862 > 0.857)
    q = token_query([[word, e(1)]], [[e(4), e(5)]])  # asked in game A
    got = retrieve("token_match", q, bank, geo, threshold=0.5)
    assert got.chosen.tolist() == [0]  # game A, although dax/game B's word match is a hair higher
    assert got.best[0].item() == pytest.approx(min(float(F.normalize(word, dim=0) @ e(0)), 1.0), abs=1e-4)
    assert retrieve("token_match", q, bank, geo, threshold=0.95).chosen.tolist() == [-1]  # the weak word gates it


def test_a_large_memory_shortlists_words_and_chooses_as_the_exact_match_does(monkeypatch):
    import fastmem.memory.token_match as token_match

    g = torch.Generator().manual_seed(0)
    d, m = 16, token_match.PRUNE_ABOVE + 500
    vocab = torch.randn(400, d, generator=g)
    contexts = [torch.randn(2, d, generator=g) for _ in range(2)]
    zero = torch.zeros(d)
    bank = MemoryBank("s", d, 1, 1, 1, 1, [
        MemoryEntry(f"w{i}", f"c{i % 2}", "red", 5, "In c, w means", (8, 9), (3, 4), zero, key=zero, context_key=zero,
                    symbol_key=zero, word_tokens=vocab[torch.randint(0, 400, (3,), generator=g)],
                    context_tokens=contexts[i % 2]) for i in range(m)], token_layer=1)
    geo = KeyGeometry(None, torch.zeros(d), torch.zeros(d), torch.zeros(d), torch.ones(d))
    asked = list(range(0, m, 97))
    words = torch.stack([bank.entries[i].word_tokens + 0.05 * torch.randn(3, d, generator=g) for i in asked])
    q = QueryKeys(torch.zeros(len(asked), d), torch.zeros(len(asked), d), torch.zeros(len(asked), d),
                  (None,) * len(asked), (words, torch.ones(len(asked), 3, dtype=torch.bool)),
                  (torch.stack([contexts[i % 2] for i in asked]), torch.ones(len(asked), 2, dtype=torch.bool)))
    pruned = retrieve("token_match", q, bank, geo, threshold=0.5)
    monkeypatch.setattr(token_match, "PRUNE_ABOVE", 10 ** 9)
    exact = retrieve("token_match", q, bank, geo, threshold=0.5)
    assert torch.equal(pruned.chosen, exact.chosen) and pruned.chosen.tolist() == asked
    torch.testing.assert_close(pruned.best, exact.best)
    assert (pruned.scores >= -1.0).all() and (pruned.scores == -1.0).sum() > 0  # entries left off the shortlist


def test_scale_grows_one_memory_and_scores_it_with_the_benchmark_rows(tiny_lab):
    from fastmem.eval.scale import format_scale, run_scale, size_label

    rows, timings = run_scale(tiny_lab, [4, 8], seed=0, sample=2)
    assert [t.size for t in timings] == [4, 8] and all(t.write_s_per_binding > 0 for t in timings)
    for size in (4, 8):
        got = {r.metric: r for r in rows if r.experiment == size_label(size)}
        assert set(got) == {"read", "wrong_context", "lookalike", "kept"}
        assert got["read"].n == 2 and got["wrong_context"].n == 2 and got["lookalike"].n == 2
        assert got["read"].mode == "span_match"
    table = format_scale(rows, timings).splitlines()
    assert len(table) == 3 and table[1].startswith("4 ") and table[2].startswith("8 ")


def test_shuffled_control_retrieves_like_span_match_but_reads_badly(tiny_lab):
    """The control: same retrieval and settings as span_match (the default), another entry's value; Read
    collapses."""
    from fastmem.eval.scoring import score_probes
    from fastmem.memory.engine import prompt_states

    bank = tiny_lab.new_memory()
    rows = [("blicket", "game A", "red"), ("dax", "game B", "blue"), ("wug", "game C", "green"),
            ("toma", "game D", "cat")]
    tiny_lab.write(bank, rows)
    reads = probe_set("read", [tiny_lab.question(w, c) for w, c, _ in rows], [label for *_, label in rows])
    states = prompt_states(tiny_lab.lm, bank, list(reads.prompts))
    cal = tiny_lab.calibration
    assert cal.settings("shuffled") == cal.settings("span_match")
    rate = {m: score_probes(tiny_lab.lm, bank, tiny_lab.geometry, cal, "t", m, reads, states)[0].rate
            for m in ("span_match", "shuffled")}
    assert rate["span_match"] >= 0.75 and rate["shuffled"] == 0.0, rate
    r = tiny_lab.ask(bank, tiny_lab.question("blicket", "game A"), mode="shuffled")
    assert r.chosen == 0 and "Shuffled control: injected the value of 'dax' in 'game B'" in r.reason
    assert torch.equal(r.value, bank.entries[1].value)
