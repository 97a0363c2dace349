"""FrozenLM: batched left-padded states, slot positions, labels, output embedding, arch table, frozen model."""
import hashlib
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from fastmem.model.arch import arch_names, get_module
from fastmem.errors import LabelError, ModelLoadError
from fastmem.model.lm import MAX_LABEL_TOKENS
from fastmem.memory.prompts import render

WRITE = "In {context}, {word} means"
READ = "Question: in {context}, what is {word}? Answer:"
PLAIN = "Question: what is {word}? Answer:"


@pytest.fixture(params=["neox", "llama"])
def lm(request):
    return request.getfixturevalue(request.param)


def checksum(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _prompts():
    return [render(WRITE, "blicket", "game A"), render(READ, "dax", "the north lab"), render(PLAIN, "wug"),
            render(READ, "toma", "game B"), render(WRITE, "zib", "the south lab")]


def test_batched_left_padded_states_equal_single_prompt_states(lm):
    prompts = _prompts()
    lengths = {len(lm.encode(p).ids) for p in prompts}
    assert len(lengths) > 1  # really different lengths, so padding happens
    batched = lm.states(prompts, batch_size=8)
    assert batched.word.shape == (len(prompts), lm.n_layers + 1, lm.hidden_size)
    assert batched.context.shape == batched.word.shape
    assert batched.final.shape == (len(prompts), lm.hidden_size)
    for i, p in enumerate(prompts):
        single = lm.states([p])
        torch.testing.assert_close(batched.word[i], single.word[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(batched.context[i], single.context[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(batched.final[i], single.final[0], rtol=1e-4, atol=1e-5)
    # smaller batches give the same result and report progress per batch
    seen = []
    small = lm.states(prompts, batch_size=2, progress=seen.append)
    assert seen == [2, 2, 1]
    torch.testing.assert_close(small.final, batched.final, rtol=1e-4, atol=1e-5)


def test_states_are_the_hidden_states_at_the_slot_tokens(lm):
    p = render(READ, "blicket", "game A")
    e = lm.encode(p)
    states = lm.states([p])
    with torch.no_grad():
        out = lm.model(input_ids=torch.tensor([e.ids]), output_hidden_states=True)
    hidden = torch.stack(out.hidden_states, dim=1)[0]  # [L+1, T, d]
    torch.testing.assert_close(states.word[0], hidden[:, e.word_positions[-1]], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(states.context[0], hidden[:, e.context_positions].mean(1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(states.final[0], hidden[-1, -1], rtol=1e-4, atol=1e-5)


def test_empty_states(lm):
    s = lm.states([])
    assert len(s) == 0 and s.word.shape == (0, lm.n_layers + 1, lm.hidden_size)


def test_slot_positions_land_on_the_right_tokens(neox):
    e = neox.encode(render(READ, "blicket", "the north lab"))
    assert [e.tokens[i] for i in e.word_positions] == ["blicket"]
    assert [e.tokens[i] for i in e.context_positions] == ["the", "north", "lab"]
    assert e.answer_position == len(e.ids) - 1 and e.tokens[-1] == ":"
    w = neox.encode(render(WRITE, "dax", "game B"))
    assert [w.tokens[i] for i in w.word_positions] == ["dax"]
    assert [w.tokens[i] for i in w.context_positions] == ["game", "B"]
    assert w.tokens[-1] == "means"


def test_prompt_without_context_uses_the_frame_before_the_word(neox):
    e = neox.encode(render(PLAIN, "wug"))
    assert [e.tokens[i] for i in e.word_positions] == ["wug"]
    assert e.context_positions == list(range(e.word_positions[0]))
    assert [e.tokens[i] for i in e.context_positions] == ["Question", ":", "what", "is"]


def test_label_tokens_one_token(lm):
    ids = lm.label_tokens("red")
    assert lm.tokenizer.convert_ids_to_tokens(list(ids)) == ["red"]
    assert lm.label_tokens("  red ") == ids


def test_label_tokens_several_tokens_in_order(lm):
    ids = lm.label_tokens("red blue")
    assert lm.tokenizer.convert_ids_to_tokens(list(ids)) == ["red", "blue"]


def test_label_tokens_too_long_or_empty_raises(lm):
    with pytest.raises(LabelError) as info:
        lm.label_tokens(" ".join(["red"] * (MAX_LABEL_TOKENS + 1)))
    assert f"{MAX_LABEL_TOKENS + 1} tokens" in str(info.value) and f"at most {MAX_LABEL_TOKENS}" in str(info.value)
    with pytest.raises(LabelError):
        lm.label_tokens("   ")


def test_unembedding_is_the_output_embedding_untied_neox(neox):
    names = arch_names(neox.model)
    w_in = get_module(neox.model, names.input_embedding).weight
    assert neox.unembedding is neox.model.get_output_embeddings().weight
    assert neox.unembedding is neox.model.lm_head.weight
    assert neox.unembedding.shape == w_in.shape
    assert not torch.equal(neox.unembedding, w_in)


def test_unembedding_tied_llama(llama):
    names = arch_names(llama.model)
    w_in = get_module(llama.model, names.input_embedding).weight
    assert torch.equal(llama.unembedding, w_in)
    assert get_module(llama.model, names.final_norm) is llama.model.model.norm
    assert llama.n_layers == len(get_module(llama.model, names.layers))


def test_arch_names_unknown_model_type_raises():
    fake = nn.Linear(2, 2)
    fake.config = SimpleNamespace(model_type="totally-new-arch")
    with pytest.raises(ModelLoadError, match="totally-new-arch"):
        arch_names(fake)


def test_model_is_frozen_and_unchanged_by_reads_and_writes(lm):
    from fastmem.memory.engine import answer, make_entries
    from fastmem.memory.bank import MemoryBank
    from fastmem.memory.retrieval import KeyGeometry

    assert not any(p.requires_grad for p in lm.model.parameters())
    before = checksum(lm.model)
    prompts = [render(WRITE, "blicket", "game A"), render(WRITE, "dax", "game B")]
    states = lm.states(prompts)
    bank = MemoryBank(lm.name, lm.hidden_size, 2, 1, 1, value_steps=8)
    for entry in make_entries(lm, bank, states, ["blicket", "dax"], ["game A", "game B"], ["red", "cat"], prompts):
        bank.add(entry)
    zero = torch.zeros(lm.hidden_size)
    reads = lm.states([render(READ, "blicket", "game A")])
    for mode in ("raw_both_top1", "dual_key"):
        answer(lm, bank, KeyGeometry(None, zero, zero), reads, ["game A"], mode, 4.0, None)
    lm.generate(prompts[0].text, lm.logits(states.final)[0], max_new_tokens=3)
    assert checksum(lm.model) == before
    assert not any(p.requires_grad for p in lm.model.parameters())


def test_batched_continuations_match_transformers_greedy_decoding(lm):
    prompt = render(READ, "dax", "game B")
    ids = lm.tokenizer(prompt.text, return_tensors="pt")["input_ids"]
    first = lm.logits(lm.states([prompt]).final)[0]
    top2 = first.topk(2).indices.tolist()
    with torch.inference_mode():
        ref = lm.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=6,
                                pad_token_id=lm.tokenizer.pad_token_id)[0, ids.shape[1]:].tolist()
    assert ref[0] == top2[0]
    expected = ref  # transformers stops after the end-of-text token, as continuations does
    assert lm.generate(prompt.text, first, max_new_tokens=6) == expected
    # Two first tokens decode as one batch; each row equals decoding it alone; equal firsts decode once.
    both = lm.continuations(prompt.text, [top2[0], top2[1], top2[0]], max_new_tokens=6)
    assert both[0] == expected and both[2] == expected
    alone = torch.full_like(first, -1e9)
    alone[top2[1]] = 0.0
    assert both[1] == lm.generate(prompt.text, alone, max_new_tokens=6)
    assert both[1][0] == top2[1]
    assert lm.continuations(prompt.text, [], 4) == []


def test_next_tokens_is_torchs_argmax_first_maximum_included():
    import torch

    from fastmem.model.decode import next_tokens

    logits = torch.randn(5, 300)
    logits[1, 7] = logits[1, 200] = logits[1].max() + 1  # a tie: the first one, as torch.argmax
    assert torch.equal(next_tokens(logits), logits.argmax(-1)) and int(next_tokens(logits)[1]) == 7
    assert int(next_tokens(logits[2])) == int(logits[2].argmax())  # one row
    assert torch.equal(next_tokens(logits.bfloat16()), logits.bfloat16().argmax(-1))  # bfloat16 logits too
    assert next_tokens(logits).dtype == torch.long
