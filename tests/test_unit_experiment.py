"""The Experiments page's library call: per-binding results under the benchmark's read rule."""
import pytest

from fastmem.eval.experiment import run_experiment


def test_run_experiment_scores_each_binding_with_the_benchmark_rule(tiny_lab):
    got = tiny_lab.runs.experiment(tiny_lab.suite, "same game A/B", 3, "token_match")
    assert [(r.word, r.context) for r in got] == [(w.word, c) for w in tiny_lab.suite.split("test")[:3]
                                                  for c in ("game A", "game B")]
    for r in got:
        label_text = tiny_lab.lm.tokenizer.decode(list(tiny_lab.lm.label_tokens(r.label)))
        assert r.ok == (r.answer == label_text)  # the label token itself, not a stripped look-alike string
        assert r.note
        if r.retrieved == "nothing":
            assert r.margin is None
    assert any(r.ok for r in got)


def test_run_experiment_says_where_slot_free_reading_found_the_word_and_context(tiny_lab):
    got = run_experiment(tiny_lab, tiny_lab.suite, "same game A/B", 2, "span_match")
    assert got and all(r.note.startswith("Found ") for r in got), [r.note for r in got]  # Inspect's wording
    assert not any(r.note.startswith("Asked ") for r in got)
    for r in got:
        if r.retrieved != "nothing":
            assert f"'{r.retrieved.split(' · ')[0]}' in '" in r.note


def test_run_experiment_with_memory_off_fails_every_binding(tiny_lab):
    got = run_experiment(tiny_lab, tiny_lab.suite, "same game A/B", 2, "none")
    assert got and not any(r.ok for r in got)
    assert all(r.retrieved == "nothing" and "memory off" in r.note for r in got)


def test_typed_questions_in_paraphrase_forms_are_keyed_on_word_and_context(tiny_lab):
    q = tiny_lab.parse_question("Question: what does blicket mean in game A? Answer:")
    assert (q.word, q.context) == ("blicket", "game A")
    assert q.text[q.context_span[0]:q.context_span[1]] == "game A"
    q = tiny_lab.parse_question("In game B, the meaning of dax is")
    assert (q.word, q.context) == ("dax", "game B")


def test_marking_accepts_the_context_after_the_word_and_refuses_overlaps(tiny_lab):
    from fastmem.errors import BindingError
    from fastmem.memory.prompts import mark

    q = tiny_lab.parse_question("Question: what does blicket mean in game A? Answer:", word="blicket",
                                context="game A")
    assert q.text[q.word_span[0]:q.word_span[1]] == "blicket"
    assert q.text[q.context_span[0]:q.context_span[1]] == "game A" and q.context_span[0] > q.word_span[1]
    # the occurrence of the context nearest the word
    text = "In game A, dax means red. Question: what does dax mean in game A? Answer:"
    p = mark(text, "dax", "game A")
    assert p.word_span[0] == text.rindex("dax") and p.context_span[0] == text.rindex("game A")
    with pytest.raises(BindingError, match="overlaps the word"):
        mark("Question: what is dax game? Answer:", "dax", "dax game")
    with pytest.raises(BindingError, match="does not occur"):
        mark("Question: what is dax? Answer:", "dax", "game A")
