"""load_model: unreachable hub ids, folders without a model, and a save_pretrained round trip."""
import torch

import pytest

from fastmem.errors import ModelLoadError
from fastmem.model.lm import FrozenLM
from fastmem.model.loading import load_model
from fastmem.memory.prompts import render


def test_unknown_hub_id_offline_names_the_offline_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        load_model("fastmem-test/no-such-model-anywhere", device="cpu")
    assert "smollm2" in str(info.value)
    assert "no-such-model-anywhere" in str(info.value)


def test_folder_without_config_raises(tmp_path):
    (tmp_path / "weights.txt").write_text("not a model")
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(str(tmp_path), device="cpu")


def test_empty_spec_and_missing_gguf_raise(tmp_path):
    with pytest.raises(ModelLoadError):
        load_model("  ", device="cpu")
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(str(tmp_path / "missing.gguf"), device="cpu")


def test_saved_tiny_neox_reloads_with_its_output_embedding(neox, tmp_path):
    folder = tmp_path / "tiny-neox"
    neox.model.save_pretrained(folder)
    neox.tokenizer.save_pretrained(folder)
    model, tokenizer, name = load_model(str(folder), device="cpu")
    assert name == str(folder)
    assert not any(p.requires_grad for p in model.parameters())
    assert torch.equal(model.get_output_embeddings().weight, neox.unembedding)
    assert not torch.equal(model.get_output_embeddings().weight, model.get_input_embeddings().weight)
    for (k, a), (k2, b) in zip(sorted(neox.model.state_dict().items()), sorted(model.state_dict().items())):
        assert k == k2 and torch.equal(a, b), k
    lm = FrozenLM(model, tokenizer, name)
    prompts = [render("In {context}, {word} means", "blicket", "game A"),
               render("Question: what is {word}? Answer:", "dax")]
    assert [lm.encode(p).ids for p in prompts] == [neox.encode(p).ids for p in prompts]
    torch.testing.assert_close(lm.logits(lm.states(prompts).final), neox.logits(neox.states(prompts).final),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", ["neox", "llama"])
def test_bfloat16_weights_give_float32_states_close_to_float32(arch, neox, llama, tmp_path):
    """The bf16 path (`--dtype bfloat16`): weights in bfloat16, states handed on as float32, logits near float32's."""
    base = neox if arch == "neox" else llama
    folder = tmp_path / arch
    base.model.save_pretrained(folder)
    base.tokenizer.save_pretrained(folder)
    model, tokenizer, name = load_model(str(folder), device="cpu", dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    lm = FrozenLM(model, tokenizer, base.name)
    prompts = [render("In {context}, {word} means", "dax", "game A")]
    final = lm.states(prompts).final
    assert final.dtype == torch.float32 and torch.isfinite(final).all()
    torch.testing.assert_close(lm.logits(final), base.logits(base.states(prompts).final), rtol=0.05, atol=0.05)


def test_bfloat16_memory_reads_what_float32_reads(tiny_lab, tmp_path):
    """Written and read on bfloat16 weights, with the float32 calibration: values stay float32 and every binding
    reads back as it does in float32."""
    from fastmem.lab import Lab

    folder = tmp_path / "neox"
    tiny_lab.lm.model.save_pretrained(folder)
    tiny_lab.lm.tokenizer.save_pretrained(folder)
    model, tokenizer, _ = load_model(str(folder), device="cpu", dtype="bfloat16")
    lab16 = Lab(FrozenLM(model, tokenizer, tiny_lab.lm.name), tiny_lab.calibration, tiny_lab.geometry)
    rows = [("dax", "game A", "red"), ("dax", "game B", "blue"), ("wug", "game B", "cat"), ("toma", "game A", "fish")]
    got = {}
    for name, lab in (("bf16", lab16), ("fp32", tiny_lab)):
        bank = lab.new_memory()
        assert all(w.status == "added" for w in lab.write(bank, rows))
        assert all(e.values.dtype == torch.float32 and torch.isfinite(e.values).all() for e in bank.entries)
        asked = [lab.ask(bank, lab.question(w, c)) for w, c, _ in rows]
        got[name] = [(r.chosen, r.answer_ids) for r in asked]
    assert got["bf16"] == got["fp32"] == [(i, tiny_lab.lm.label_tokens(label)) for i, (_, _, label) in enumerate(rows)]


def test_auto_dtype_is_float32_on_a_cpu_and_bfloat16_on_a_gpu():
    from fastmem.model.loading import resolve_dtype

    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32  # bfloat16 measured slower on CPUs
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ModelLoadError, match="Unknown dtype"):
        resolve_dtype("float8", torch.device("cpu"))
