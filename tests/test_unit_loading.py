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


# The app's model box (fastmem.model.loading.app_model_spec): listed models, Hub ids, and folders or .gguf files
# under a model root; one message for every other path, whatever is on the disk there.
def refusal(text):
    from fastmem.model.loading import app_model_spec

    with pytest.raises(ModelLoadError) as info:
        app_model_spec(text)
    return str(info.value)


@pytest.fixture()
def roots(tmp_path, monkeypatch):
    """A cache (its models folder a root), an extra root from $FASTMEM_MODEL_ROOT, and a folder outside both."""
    cache, extra, outside = tmp_path / "cache", tmp_path / "extra", tmp_path / "outside"
    for folder in (cache / "models" / "tiny", extra / "mine", outside / "model"):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    (outside / "x.gguf").write_bytes(b"GGUF")
    (extra / "y.gguf").write_bytes(b"GGUF")
    (outside / "notes.txt").write_text("secret")
    (extra / "escape").symlink_to(outside / "model")  # a link inside a root that leads out of it
    monkeypatch.setenv("FASTMEM_CACHE", str(cache))
    monkeypatch.setenv("FASTMEM_MODEL_ROOT", str(extra))
    return cache / "models", extra, outside


def test_every_path_outside_the_roots_gets_the_same_message(roots):
    from fastmem.model.loading import APP_REFUSED

    models, extra, outside = roots
    paths = ["/etc/shadow", "/etc", "/nonexistent/x", str(outside / "model"), str(outside / "notes.txt"),
             str(outside / "missing"), str(outside / "x.gguf"), str(outside / "missing.gguf"), "../outside/model",
             str(models / ".." / ".." / "outside" / "model"), "tiny/../../../outside/model", "escape",
             str(extra / "escape"), "~/.bashrc", "/", str(models), "", "tiny\0x", "a/b/c",
             "owner/../name", "owner/name.gguf", "x.gguf", "C:\\models\\x"]
    assert {refusal(p) for p in paths} == {APP_REFUSED}
    assert str(outside) not in APP_REFUSED and "exist" not in APP_REFUSED


def test_models_under_the_roots_hub_ids_and_listed_models_pass(roots):
    from fastmem.model.loading import app_model_spec

    models, extra, _ = roots
    assert app_model_spec("tiny") == str(models / "tiny")
    assert app_model_spec(str(models / "tiny")) == str(models / "tiny")  # absolute, inside the root
    assert app_model_spec("mine") == str(extra / "mine") and app_model_spec("y.gguf") == str(extra / "y.gguf")
    assert app_model_spec("HuggingFaceTB/SmolLM2-135M") == "hub:HuggingFaceTB/SmolLM2-135M"
    assert app_model_spec(" SmolLM2 ") == "smollm2" and app_model_spec("EleutherAI/pythia-70m") == "EleutherAI/pythia-70m"


def test_a_hub_id_never_reads_a_folder_of_that_name(monkeypatch, tmp_path, neox):
    """`hub:owner/name` goes to the Hub cache only: a model folder `owner/name` under the working directory
    (which a plain `load_model("owner/name")` loads) is not read."""
    folder = tmp_path / "owner" / "name"
    neox.model.save_pretrained(folder)
    neox.tokenizer.save_pretrained(folder)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_model("owner/name", device="cpu")[2] == "owner/name"  # the Python API: the local folder
    with pytest.raises(ModelLoadError, match="not reachable"):
        load_model("hub:owner/name", device="cpu")
