"""Slot-free reading (fastmem.spans): surface forms, word boundaries, order, shortlists, and the Lab reading typed
questions with no template and no marks, on tiny models."""
import random

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from fastmem.memory import spans
from fastmem.eval.metrics import probe_set
from fastmem.memory.prompts import SlottedPrompt
from fastmem.eval.suite import nonce_words

CORPUS = ["In game A, what is blicket?", "what does dax mean in the north lab", "level 1 level 12 level 4 room 101",
          "Tell me please: zq56x zq65x game A2 blickets Blicket BLICKET", "I keep hearing the word toma."]


@pytest.fixture(scope="module")
def bpe():
    """A small byte-level BPE (GPT-2 style): words split into pieces, spaces glued to the piece after them."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = CORPUS * 20 + [" " + w for w in nonce_words(400, seed=3)]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=500, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok)


@pytest.fixture(scope="module")
def table():
    """Random token keys: two different tokens are nearly orthogonal, so a match is the same tokens in order."""
    return F.normalize(torch.randn(600, 64, generator=torch.Generator().manual_seed(0)), dim=-1)


def entry_forms(tokenizer, table, entries):
    words = list(dict.fromkeys(w for w, _ in entries))
    contexts = list(dict.fromkeys(c for _, c in entries))
    embed = lambda ids: table[ids]  # noqa: E731
    return spans.EntryForms(
        spans.form_table([spans.form_token_ids(tokenizer, w, "word") for w in words], embed),
        spans.form_table([spans.form_token_ids(tokenizer, c, "context") for c in contexts], embed),
        torch.tensor([words.index(w) for w, _ in entries]), torch.tensor([contexts.index(c) for _, c in entries]))


def read(tokenizer, table, entries, questions):
    rows = []
    for q in questions:
        enc = tokenizer(q, return_offsets_mapping=True)
        rows.append(spans.question_tokens(q, enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]))
    question = spans.stack_rows(rows)
    return spans.match(question, table[question.ids], entry_forms(tokenizer, table, entries))


ENTRIES = [("blicket", "game A"), ("blicket", "game B"), ("dax", "the north lab"), ("zq56x", "level 1"),
           ("toma", "room 101")]


def test_surface_forms_cover_case_and_an_article():
    assert spans.surface_forms("blicket", "word") == ["blicket", "Blicket", "BLICKET"]
    assert set(spans.surface_forms("the north lab", "context")) == {"north lab", "North lab", "North Lab",
                                                                     "NORTH LAB"}
    assert {"game A", "game a", "Game A", "GAME A"} == set(spans.surface_forms("game A", "context"))


@pytest.mark.parametrize("question, entry", [
    ("In game A, what is blicket?", 0), ("what does blicket mean in game B", 1), ("BLICKET in Game A?", 0),
    ("I keep hearing the word blicket. What does it mean in game a?", 0), ("so... blicket (game B) = ?", 1),
    ("What is dax in the north lab?", 2), ("dax in north lab", 2), ("tell me zq56x, level 1", 3),
    ("room  101 : toma ?", 4)])
def test_a_written_word_and_context_are_found_in_any_phrasing(bpe, table, question, entry):
    got = read(bpe, table, ENTRIES, [question])
    assert int(got.rank[0].argmax()) == entry
    assert float(got.score[0, entry]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("question", [
    "In game C, what is blicket?", "In game A2, what is blicket?", "What are blickets in game A?",
    "What is flicket in game A?", "What is blicket?", "What is dax in the lab north?", "In level 12, what is zq56x?",
    "In level 1, what is zq65x?", "In room 102, what is toma?", "In game A, what is dax?"])
def test_siblings_swaps_glued_spans_and_missing_halves_are_not_found(bpe, table, question):
    got = read(bpe, table, ENTRIES, [question])
    assert float(got.score[0].max()) < 0.9, (question, got.score[0])


def test_word_and_context_spans_never_overlap_and_point_at_the_question(bpe, table):
    q = "In game A, what is blicket?"
    got = read(bpe, table, ENTRIES, [q])
    enc = bpe(q, return_offsets_mapping=True)
    (w0, w1), (c0, c1) = got.word_span[0, 0].tolist(), got.context_span[0, 0].tolist()
    assert q[enc["offset_mapping"][w0][0]:enc["offset_mapping"][w1][1]].strip() == "blicket"
    assert q[enc["offset_mapping"][c0][0]:enc["offset_mapping"][c1][1]].strip() == "game A"
    assert w0 > c1
    # a context made of the word itself is never found on the word's own tokens
    got = read(bpe, table, [("dax", "dax")], ["what is dax?", "dax and dax"])
    assert float(got.score[0, 0]) < 0.9 and float(got.score[1, 0]) == pytest.approx(1.0, abs=1e-5)


def test_a_large_memory_reads_through_its_shortlist_exactly_like_the_full_scan(bpe, table, monkeypatch):
    rng = random.Random(0)
    words = nonce_words(3000, seed=11)
    entries = [(w, rng.choice(["game A", "game B", "the north lab", "level 1"])) for w in words]
    questions = [f"what does {w} mean in {c}?" for w, c in entries[:40:4]] + ["what is blicket?", "hello there"]
    shortlisted = read(bpe, table, entries, questions)
    monkeypatch.setattr(spans, "SHORTLIST_ABOVE", 10 ** 9)
    full = read(bpe, table, entries, questions)
    found = full.score.max(1).values > 0.5  # where something matches, the shortlist finds the same entry
    assert found[:10].all() and not found[10:].any()
    assert torch.equal(shortlisted.rank.argmax(1)[found], full.rank.argmax(1)[found])
    best = full.rank.argmax(1, keepdim=True)
    torch.testing.assert_close(shortlisted.score.gather(1, best)[found], full.score.gather(1, best)[found])
    assert torch.equal(full.rank.argmax(1)[:10], torch.arange(0, 40, 4))
    assert (shortlisted.score[~found] < 0.5).all()  # and where nothing does, it finds nothing either


def test_marks_restrict_the_search_to_the_marked_spans(tiny_lab):
    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, [("blicket", "game A", "red"), ("dax", "game B", "blue")])
    text = "blicket or dax , in game A or game B ?"
    marked = tiny_lab.key_question(text, word="dax", context="game B")
    assert marked.prompt.marked
    r = tiny_lab.ask(bank, marked.prompt)
    assert r.chosen == 1 and r.answer.strip() == "blue"
    r = tiny_lab.ask(bank, tiny_lab.key_question(text, word="blicket", context="game B").prompt)
    assert r.chosen == -1 and "Nothing injected" in r.reason  # blicket is written in game A only


def test_the_lab_reads_typed_questions_with_no_template_and_no_marks(tiny_lab):
    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, [("blicket", "game A", "red"), ("blicket", "game B", "blue"), ("dax", "game B", "green")])
    for text, label in [("in game B , what is blicket ?", "blue"), ("blicket in game A ?", "red"),
                        ("what does dax mean in game B", "green"), ("game A : blicket", "red")]:
        r = tiny_lab.ask(bank, tiny_lab.key_question(text).prompt)  # (a random model: its answers mean nothing)
        assert r.chosen >= 0 and bank.entries[r.chosen].label == label and r.found is not None, (text, r.reason)
    for text in ["in game C , what is blicket ?", "what is blicket ?", "in game A , what is dax ?"]:
        r = tiny_lab.ask(bank, tiny_lab.key_question(text).prompt)
        assert r.chosen == -1, (text, r.reason)
    r = tiny_lab.ask(bank, tiny_lab.key_question("what is blicket ?").prompt)
    assert r.reason.startswith("Found the word 'blicket', but none of its written contexts")
    r = tiny_lab.ask(bank, tiny_lab.key_question("in game A , what is wug ?").prompt)
    assert r.reason.startswith("Found the context 'game A', but no word written in it")


def test_a_memory_keyed_on_the_question_frame_fires_without_its_context_and_the_metrics_say_so(tiny_lab):
    """Deliberately bad: the 'context' written is the frame every question has (`what is`), so a question that
    lacks the real context still matches; plain and wrong context must catch it."""
    from fastmem.eval.scoring import score_probes
    from fastmem.memory.engine import prompt_states

    cal, geo, lm = tiny_lab.calibration, tiny_lab.geometry, tiny_lab.lm
    probes = {"plain": probe_set("plain", [tiny_lab.key_question("what is blicket ?").prompt], ["blicket"]),
              "wrong_context": probe_set("wrong_context", [tiny_lab.key_question("in game C , what is blicket ?")
                                                           .prompt], ["blicket"])}
    rates = {}
    for name, bank_rows in (("good", [("blicket", "game A", "red")]), ("bad", [("blicket", "what is", "red")])):
        bank = tiny_lab.new_memory()
        tiny_lab.write(bank, bank_rows, template="In {context} , {word} means")
        for metric, p in probes.items():
            states = prompt_states(lm, bank, list(p.prompts))
            rates[name, metric] = score_probes(lm, bank, geo, cal, "t", "span_match", p, states)[0].rate
    assert rates["good", "plain"] == 0.0 and rates["good", "wrong_context"] == 0.0
    assert rates["bad", "plain"] == 1.0 and rates["bad", "wrong_context"] == 1.0, rates


def test_question_tokens_mark_word_boundaries(bpe):
    q = "In game A2, what is blicket's?"
    enc = bpe(q, return_offsets_mapping=True)
    row = spans.question_tokens(q, enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]])
    texts = [q[s:e] for s, e in (enc["offset_mapping"][i] for i in row["positions"])]
    assert all(t.strip() for t in texts)  # whitespace-only tokens are never searched
    for text, start, end in zip(texts, row["can_start"], row["can_end"]):
        if text.strip() == "A":  # 'A' glued to '2': a span may start there but not end there
            assert start and not end
    last_word = [i for i, t in enumerate(texts) if "et" in t]
    assert row["can_end"][last_word[-1]]  # "blicket's": the apostrophe ends the word
    assert SlottedPrompt("x", (0, 1)).marked is False
