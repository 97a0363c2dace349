"""Labels of several tokens: a correction per token (minus the CE gradient there, label teacher-forced),
read back token by token, stored in memory files, scored as whole sequences."""
import pytest
import torch

from fastmem.model import decode
from fastmem.eval.scoring import score_probes
from fastmem.memory.engine import answer, prompt_states
from fastmem.eval.metrics import LabelIndex, hit_mask, probe_set, read_answers
from fastmem.memory.prompts import render
from fastmem.memory.values import ce_gradient
from fastmem.memory.file import from_bytes, to_bytes

WRITE = "In {context}, {word} means"
READ = "Question: in {context}, what is {word}? Answer:"
ROWS = [("wug", "game A", "red blue"), ("wug", "game B", "cat fish green"), ("dax", "game A", "dog")]


@pytest.fixture(params=["neox", "llama"])
def lm(request):
    return request.getfixturevalue(request.param)


def test_each_position_value_is_minus_the_ce_gradient_there(tiny_lab, lm):
    from fastmem.lab import Lab

    lab = Lab(lm, tiny_lab.calibration, tiny_lab.geometry, tiny_lab.suite)
    bank = lab.new_memory()
    bank.value_steps = 1  # one step: exactly the post's value, per position
    lab.write(bank, ROWS, template=WRITE)
    W = lm.unembedding.detach().float().cpu()
    for (word, ctx, label), entry in zip(ROWS, bank.entries):
        ids = lm.encode(render(WRITE, word, ctx)).ids + list(lm.label_tokens(label))
        with torch.no_grad():
            hidden = lm.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
        n = len(lm.label_tokens(label))
        finals = hidden[len(ids) - n - 1:len(ids) - 1].float()  # the states before each label token
        targets = torch.tensor(lm.label_tokens(label))
        assert entry.values.shape == (n, lm.hidden_size) and entry.label_ids == tuple(targets.tolist())
        torch.testing.assert_close(entry.values, -ce_gradient(finals, targets, W), rtol=1e-4, atol=1e-5)


def test_greedy_with_zero_corrections_is_plain_greedy(neox):
    prompt = neox.encode(render(READ, "wug", "game A")).ids
    with torch.no_grad():
        ref = neox.model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                  do_sample=False, max_new_tokens=4, pad_token_id=0)[0, len(prompt):].tolist()
    got = decode.greedy(neox, [prompt, prompt], [ref[0], ref[0]], 3, torch.zeros(2, 3, neox.hidden_size), 5.0)
    assert got[0] == got[1] == ref[:len(got[0])]


def test_read_generates_the_whole_label_with_memory_and_not_without(tiny_lab):
    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, ROWS)
    for word, ctx, label in ROWS:
        r = tiny_lab.ask(bank, tiny_lab.question(word, ctx))
        want = tiny_lab.lm.label_tokens(label)
        assert r.chosen == bank.find(word, ctx)
        assert r.answer_ids == want, (word, ctx, r.answer)
        assert len(r.base_answer_ids) == len(want) and r.base_answer_ids != want
        assert r.answer == tiny_lab.lm.tokenizer.decode(list(want))


def test_generation_with_memory_starts_with_the_whole_label(tiny_lab):
    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, ROWS)
    r = tiny_lab.ask(bank, tiny_lab.question("wug", "game B"), max_new_tokens=5)
    assert r.generation.startswith(r.answer) and r.answer == tiny_lab.lm.tokenizer.decode(
        list(tiny_lab.lm.label_tokens("cat fish green")))


def test_memory_file_keeps_every_tokens_value(tiny_lab):
    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, ROWS)
    again = tiny_lab.import_memory(tiny_lab.export_memory(bank))
    assert [e.label_ids for e in again.entries] == [e.label_ids for e in bank.entries]
    for a, b in zip(again.entries, bank.entries):
        assert torch.equal(a.values, b.values)
    assert to_bytes(again) == to_bytes(bank)


def _read_rate(lab, bank, values_of=None) -> float:
    """Read over ROWS through the benchmark's scoring path (score_probes)."""
    reads = probe_set("read", [render(READ, w, c) for w, c, _ in ROWS], [label for _, _, label in ROWS])
    states = prompt_states(lab.lm, bank, list(reads.prompts))
    [row] = score_probes(lab.lm, bank, lab.geometry, lab.calibration, "t", "token_match", reads, states)
    return row.rate


def test_read_metric_needs_every_tokens_own_value(tiny_lab):
    """A deliberately bad memory scores badly: later tokens' values swapped between entries."""
    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, ROWS)
    assert _read_rate(tiny_lab, bank) == 1.0
    a, b = bank.entries[0], bank.entries[1]  # "red blue" and "cat fish green": swap the 2nd tokens' values
    swapped_a = torch.stack([b.tail_values[0]])
    swapped_b = torch.cat([a.tail_values[:1], b.tail_values[1:]])
    from dataclasses import replace

    bank.add_many([replace(a, tail_values=swapped_a), replace(b, tail_values=swapped_b)])  # replaced in place
    assert _read_rate(tiny_lab, bank) <= 1 / 3  # only the one-token label is still read


def test_first_token_right_is_not_a_hit(tiny_lab):
    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, ROWS[:1])
    reads = probe_set("read", [tiny_lab.question("wug", "game A")], ["red blue"])
    first = torch.tensor(tiny_lab.lm.label_tokens("red"))
    wrong = torch.tensor([[int(first[0]), int(tiny_lab.lm.label_tokens("dog")[0])]])
    assert not hit_mask(reads, wrong, wrong, LabelIndex.of(bank), tiny_lab.lm).item()


def test_one_token_labels_decode_nothing(tiny_lab):
    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, [("wug", "game A", "red"), ("dax", "game B", "blue")])
    reads = probe_set("read", [tiny_lab.question("wug", "game A"), tiny_lab.question("dax", "game B")],
                      ["red", "blue"])
    states = prompt_states(tiny_lab.lm, bank, list(reads.prompts))
    got = answer(tiny_lab.lm, bank, tiny_lab.geometry, states, list(reads.contexts), "token_match", 4.0, None)
    out = read_answers(tiny_lab.lm, bank, reads, got, 4.0)
    assert out.length == 1 and out.ids.shape == (2, 1) and torch.equal(out.ids[:, 0], got.ids)  # nothing decoded


def test_version_2_file_loads_with_one_token_labels(tiny_lab):
    from fastmem.memory import file as memory_file

    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, [("wug", "game A", "red")])
    keys = {f: bank.stacked()[f] for f in ("key", "context_key", "symbol_key", "word_tokens", "context_tokens")}
    old, notes = from_bytes(memory_file.write_legacy(bank, "2", keys))
    assert notes and "no digest" in notes[0]
    assert [e.label_ids for e in old.entries] == [bank.entries[0].label_ids]
    assert torch.equal(old.entries[0].value, bank.entries[0].value)


def test_refined_later_values_are_anchored_on_the_answer_state(tiny_lab):
    """Refinement (steps 2+) of a later token's value also descends CE at the answer state, so it still
    wins there; step 1 stays exactly minus the gradient at the token's own position (test above)."""
    from fastmem.memory.values import correction_vector

    lm = tiny_lab.lm
    W = lm.unembedding.detach().float().cpu()
    ids = lm.encode(render(WRITE, "wug", "game A")).ids + list(lm.label_tokens("red"))
    [finals] = decode.answer_states(lm, [ids], [2])
    target = torch.tensor([lm.label_tokens("blue")[0]])
    plain = correction_vector(finals[1:], target, W, steps=8)
    anchored = correction_vector(finals[1:], target, W, steps=8, anchor=finals[:1])
    ce = torch.nn.functional.cross_entropy
    assert ce((finals[:1] + anchored) @ W.T, target) < ce((finals[:1] + plain) @ W.T, target)
    torch.testing.assert_close(correction_vector(finals[1:], target, W, steps=1, anchor=finals[:1]),
                               correction_vector(finals[1:], target, W, steps=1))


def test_a_word_at_the_start_is_read_after_the_start_token(neox):
    first = neox.encode(render("{word} in {context} means", "dax", "game A"))
    later = neox.encode(render("Question: what is {word} in {context}? Answer:", "dax", "game A"))
    assert first.ids[0] == neox.tokenizer.eos_token_id and first.word_positions == [1]
    assert [first.ids[i] for i in first.word_positions] == [later.ids[i] for i in later.word_positions]
    assert [first.tokens[i] for i in first.context_positions] == ["game", "A"]


def test_the_sweep_reads_multi_token_labels_as_the_benchmark_does(tiny_lab):
    """Calibration's and the curve's sweep (`metrics.Sweep`) against the benchmark's path (`score_probes`) at the
    same alpha and threshold: the same read rate, whole labels decoded from each question's own tokens."""
    from fastmem.eval.metrics import Sweep

    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, ROWS)
    reads = probe_set("read", [render(READ, w, c) for w, c, _ in ROWS], [label for _, _, label in ROWS])
    states = prompt_states(tiny_lab.lm, bank, list(reads.prompts))
    sweep = Sweep(tiny_lab.lm, bank, tiny_lab.geometry, "token_match", [(reads, states)])
    s = tiny_lab.calibration.settings("token_match")
    assert sweep.rates(s.alpha, s.threshold)["read"] == _read_rate(tiny_lab, bank) == 1.0
    assert sweep.rates(0.0, s.threshold)["read"] == 0.0  # no memory: the tiny model knows none of them
