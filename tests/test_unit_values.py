"""Values are minus the CE gradient w.r.t. the post-norm state; injection is linear in the output head."""
import pytest
import torch
import torch.nn.functional as F

from fastmem.memory.prompts import render
from fastmem.memory.values import ce_gradient, correction_vector, one_step_value

WRITE = "In {context}, {word} means"
ROWS = [("blicket", "game A", "red"), ("dax", "game B", "cat"), ("wug", "game C", "green"),
        ("toma", "game D", "fish"), ("zib", "the north lab", "blue")]


@pytest.fixture(params=["neox", "llama"])
def lm(request):
    return request.getfixturevalue(request.param)


def _write_states(lm):
    prompts = [render(WRITE, w, c) for w, c, _ in ROWS]
    targets = torch.tensor([lm.label_tokens(label)[0] for _, _, label in ROWS])
    return prompts, lm.states(prompts), targets


def _ce(final, v, targets, W):
    return F.cross_entropy((final + v) @ W.T, targets, reduction="none")


def test_one_step_value_is_minus_ce_gradient(lm):
    _, states, targets = _write_states(lm)
    W = lm.unembedding.detach().float().cpu()
    value = one_step_value(states.final, targets, W)
    grad = ce_gradient(states.final, targets, W)
    assert value.shape == (len(ROWS), lm.hidden_size)
    assert grad.abs().max() > 0  # a real gradient, not a trivially zero one
    torch.testing.assert_close(value, -grad, rtol=1e-5, atol=1e-6)
    # each row's gradient is its own: a one-row computation gives the same row
    for i in range(len(ROWS)):
        torch.testing.assert_close(ce_gradient(states.final[i:i + 1], targets[i:i + 1], W)[0], grad[i])


def test_one_step_value_with_bias_is_minus_ce_gradient(lm):
    _, states, targets = _write_states(lm)
    W = lm.unembedding.detach().float().cpu()
    bias = torch.randn(W.shape[0], generator=torch.Generator().manual_seed(3))
    value = one_step_value(states.final, targets, W, bias)
    torch.testing.assert_close(value, -ce_gradient(states.final, targets, W, bias), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(value, one_step_value(states.final, targets, W))  # the bias matters


def test_correction_vector_one_step_is_exactly_the_value(lm):
    _, states, targets = _write_states(lm)
    W = lm.unembedding.detach().float().cpu()
    assert torch.equal(correction_vector(states.final, targets, W, steps=1),
                       one_step_value(states.final, targets, W))


def test_more_steps_lower_ce_and_raise_target_probability(lm):
    _, states, targets = _write_states(lm)
    W = lm.unembedding.detach().float().cpu()
    zero = torch.zeros_like(states.final)
    ces, probs = [], []
    for steps in (None, 1, 4, 16):
        v = zero if steps is None else correction_vector(states.final, targets, W, steps=steps)
        ce = _ce(states.final, v, targets, W)
        ces.append(ce)
        probs.append(torch.exp(-ce))
    for before, after in zip(ces, ces[1:]):
        assert (after < before).all(), (before, after)
    for before, after in zip(probs, probs[1:]):
        assert (after > before).all()


def test_injection_after_final_norm_is_linear_in_the_head(lm):
    _, states, targets = _write_states(lm)
    W = lm.unembedding.detach().float().cpu()
    v = correction_vector(states.final, targets, W, steps=4)
    base = lm.logits(states.final)
    for alpha in (0.5, 1.0, 8.0):
        torch.testing.assert_close(lm.logits(states.final + alpha * v), base + alpha * (v @ W.T),
                                   rtol=1e-4, atol=1e-5)


def test_logits_of_final_state_equal_plain_forward(lm):
    prompts, states, _ = _write_states(lm)
    got = lm.logits(states.final)
    for i, p in enumerate(prompts):
        ids = torch.tensor([lm.encode(p).ids])
        with torch.no_grad():
            ref = lm.model(input_ids=ids).logits[0, -1].float()
        torch.testing.assert_close(got[i], ref, rtol=1e-4, atol=1e-5)


def test_label_ranks_show_the_refined_value_puts_the_label_first(tiny_lab):
    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, [("blicket", "game A", "red")])
    ranks = tiny_lab.demo.label_ranks(bank, 0, (1, 8, 64))
    assert set(ranks) == {1, 8, 64} and all(r >= 1 for r in ranks.values())
    assert ranks[64] <= ranks[8] <= ranks[1] and ranks[64] == 1, ranks


def test_write_with_one_value_step_stores_the_posts_value(tiny_lab):
    from fastmem.memory.values import one_step_value

    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, [("blicket", "game A", "red")], value_steps=1)
    lm = tiny_lab.lm
    states = lm.states([render(WRITE, "blicket", "game A")])
    want = one_step_value(states.final, torch.tensor(lm.label_tokens("red")), lm.unembedding.detach().float().cpu())
    torch.testing.assert_close(bank.entries[0].value, want[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(Exception, match="Value steps 0"):
        tiny_lab.write(bank, [("dax", "game A", "red")], value_steps=0)
