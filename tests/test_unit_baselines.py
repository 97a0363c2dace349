"""The baselines on tiny random models: in-context prompts (cached or not, the same states), the codebook's
keys and deferral radius, and their rows in the benchmark."""
import pytest
import torch

from fastmem.memory import in_context
from fastmem.eval.bench import BENCH_MODES
from fastmem.eval.probesets import fact_probes
from fastmem.eval.scoring import score_probes
from fastmem.memory.codebook import canonical_question, codebook_keys, codebook_scores
from fastmem.memory.engine import answer, prompt_states
from fastmem.errors import SettingsError
from fastmem.memory.in_context import InContextPrompt, build_prompts, final_states, in_context_readout, statements
from fastmem.memory.forms import READ_TEMPLATE
from fastmem.eval.metrics import LabelIndex, probe_set
from fastmem.memory.prompts import render

ROWS = [("blicket", "game A", "red"), ("blicket", "game B", "blue"), ("dax", "game A", "green"),
        ("dax", "game B", "cat")]


@pytest.fixture()
def memory(tiny_lab):
    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, ROWS)
    return bank


def question(word, context="game A"):
    return render(READ_TEMPLATE, word, context)


@pytest.mark.parametrize("model", ["neox", "llama"])
def test_statements_run_once_and_cached_give_the_states_of_whole_prompts(model, request, monkeypatch):
    lm = request.getfixturevalue(model)
    tok = lm.tokenizer
    prefix = tuple(tok("In game A , blicket means red . In game B , blicket means blue .")["input_ids"])
    questions = [tuple(tok(t, add_special_tokens=False)["input_ids"]) for t in
                 ("Question : in game A , what is blicket ? Answer :", "what is dax ?", "blicket")]
    prompts = [InContextPrompt(prefix, q) for q in questions]  # questions of different lengths: right padding
    monkeypatch.setattr(in_context, "CACHE_ABOVE", 10_000)
    whole = final_states(lm, prompts)
    monkeypatch.setattr(in_context, "CACHE_ABOVE", 1)
    cached = final_states(lm, prompts, batch_size=2)  # two batches on copies of one cache
    assert torch.allclose(whole, cached, atol=1e-4), (whole - cached).abs().max()
    direct = lm.model.base_model(input_ids=torch.tensor([list(prefix + questions[1])])).last_hidden_state[0, -1]
    assert torch.allclose(whole[1], direct.float(), atol=1e-4)


def test_in_context_word_puts_in_only_the_asked_words_statements(tiny_lab, memory):
    assert statements(memory, "in_context_word", "dax") == ["In game A, dax means green.", "In game B, dax means cat."]
    assert len(statements(memory, "in_context_all", "dax")) == 4
    memory.set_enabled([e.slot for e in memory.entries].index(("dax", "game B")), False)  # a switched-off entry is not put in the prompt either
    assert statements(memory, "in_context_word", "dax") == ["In game A, dax means green."]
    with pytest.raises(SettingsError, match="in-context mode"):
        statements(memory, "token_match", "dax")


def test_a_word_never_written_is_asked_alone_as_the_plain_model_asks_it(tiny_lab, memory):
    unwritten = question("wug")
    built = build_prompts(tiny_lab.lm, memory, "in_context_word", [unwritten, question("dax")])
    assert built[0].prefix == () and built[0].ids == tiny_lab.lm.encode(unwritten).ids
    assert len(built[1].prefix) > 0 and len(built[1]) > len(built[0])
    everything = build_prompts(tiny_lab.lm, memory, "in_context_all", [unwritten])[0]
    assert len(everything.prefix) > len(built[1].prefix)


def test_a_prompt_longer_than_the_window_is_refused_with_its_size(tiny_lab, memory, monkeypatch):
    monkeypatch.setattr(tiny_lab.lm.model.config, "max_position_embeddings", 20)
    with pytest.raises(SettingsError, match="does not fit the model's window of 20 tokens"):
        build_prompts(tiny_lab.lm, memory, "in_context_all", [question("dax")])


def test_in_context_answers_are_the_models_greedy_answers_to_the_full_prompt(tiny_lab, memory):
    lm = tiny_lab.lm
    asked = [question("dax"), question("blicket", "game B"), question("wug")]
    base = lm.logits(lm.states(asked).final).argmax(-1)
    readout, lengths = in_context_readout(lm, memory, "in_context_all", asked, base, LabelIndex.of(memory).all_ids)
    for row, built in enumerate(build_prompts(lm, memory, "in_context_all", asked)):
        logits = lm.model(input_ids=torch.tensor([built.ids])).logits[0, -1]
        assert int(readout.ids[row, 0]) == int(logits.argmax())
        assert lengths[row] == len(built)
    assert torch.equal(readout.base_ids[:, 0], base)


def test_bench_rows_of_the_baselines_report_their_prompt_length(tiny_lab, memory):
    lm, cal = tiny_lab.lm, tiny_lab.calibration
    reads = probe_set("read", [question(w, c) for w, c, _ in ROWS], [label for *_, label in ROWS])
    states = prompt_states(lm, memory, list(reads.prompts))
    got = {mode: score_probes(lm, memory, tiny_lab.geometry, cal, "x", mode, reads, states)[0] for mode in BENCH_MODES}
    assert got["in_context_all"].prompt_tokens > got["in_context_word"].prompt_tokens > got["token_match"].prompt_tokens
    assert got["in_context_all"].alpha == 0.0 and got["in_context_all"].threshold is None
    facts = fact_probes()
    kept = score_probes(lm, memory, tiny_lab.geometry, cal, "x", "in_context_word", facts,
                        prompt_states(lm, memory, list(facts.prompts)))[0]
    assert kept.hits == kept.n  # no fact question names a written word: each is asked alone, unchanged


def test_codebook_keys_are_the_canonical_questions_last_token_states(tiny_lab, memory):
    lm = tiny_lab.lm
    keys = codebook_keys(lm, memory)
    own = lm.states([canonical_question(e.word, e.context) for e in memory.entries]).last[:, memory.key_layer]
    assert torch.allclose(keys, own, atol=1e-5)
    assert codebook_keys(lm, memory) is keys  # cached until the memory changes
    tiny_lab.write(memory, [("wug", "game A", "red")])
    assert codebook_keys(lm, memory).shape[0] == 5


def test_codebook_uses_the_nearest_key_only_within_the_deferral_radius(tiny_lab, memory):
    lm, geometry = tiny_lab.lm, tiny_lab.geometry
    asked = [canonical_question("dax", "game B"), render("Tell me about {word} please", "dax")]
    states = prompt_states(lm, memory, asked)
    scores = codebook_scores(lm, memory, states)
    assert scores[0, 3] == pytest.approx(1.0, abs=1e-4) and int(scores[0].argmax()) == 3  # its own key
    assert float(scores[1].max()) < 0.999
    got = answer(lm, memory, geometry, states, [None, None], "codebook", 4.0, 0.999)
    assert got.retrieved.chosen.tolist() == [3, -1]  # the other question lies outside every radius
    wide = answer(lm, memory, geometry, states, [None, None], "codebook", 4.0, -1.0)
    assert int(wide.retrieved.chosen[1]) >= 0  # with the radius wide open, the nearest key always fires


def test_baselines_score_every_mode_per_size_and_cost_grows_only_in_context(tiny_lab, monkeypatch):
    from fastmem.eval.baselines import DEFAULT_MODES, format_baselines, run_baselines
    from fastmem.eval.scale import size_label

    rows, costs = run_baselines(tiny_lab, [2, 8], DEFAULT_MODES, seed=0, questions=4, timed=2)
    for size in (2, 8):
        for mode in DEFAULT_MODES:
            got = {r.metric: r for r in rows if r.experiment == size_label(size) and r.mode == mode}
            assert set(got) == {"read", "wrong_context", "lookalike", "plain", "kept"}, (size, mode)
            assert got["read"].n == 4  # 2 bindings: two memories of one word, each asked both bindings
    cost = {(c.size, c.mode): c for c in costs}
    assert cost[(8, "in_context_all")].prompt_tokens > cost[(2, "in_context_all")].prompt_tokens
    assert cost[(8, "span_match")].prompt_tokens == cost[(2, "span_match")].prompt_tokens
    assert cost[(8, "in_context_all")].ms_cached is not None and cost[(8, "span_match")].ms_cached is None
    assert all(c.fits and c.ms_per_question > 0 for c in costs)
    # a window too small for 8 bindings' statements: in_context_all does not fit, the others still run
    monkeypatch.setattr(tiny_lab.lm.model.config, "max_position_embeddings", int(cost[(2, "in_context_all")]
                                                                                   .prompt_tokens) + 20)
    rows, costs = run_baselines(tiny_lab, [2, 8], DEFAULT_MODES, seed=0, questions=4, timed=2)
    cost = {(c.size, c.mode): c for c in costs}
    assert cost[(2, "in_context_all")].fits and not cost[(8, "in_context_all")].fits
    assert not [r for r in rows if r.experiment == size_label(8) and r.mode == "in_context_all"]
    assert [r for r in rows if r.experiment == size_label(8) and r.mode == "in_context_word"]
    assert "does not fit" in format_baselines(rows, costs)
