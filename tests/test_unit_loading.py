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
