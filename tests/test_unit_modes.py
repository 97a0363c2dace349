"""A mode is one class: the example `docs/architecture.md` shows, registered for one test and used through the
public API (Lab.ask), where a deliberately careless mode must be seen to answer what it should not."""
import pytest
import torch

from fastmem.memory import modes
from fastmem.memory.retrieval import unit


class ContextOnly(modes.Mode):
    """Top-1 cosine of the context keys alone: it cannot tell one word from another in a written context."""

    name = "context_only"
    summary = "A careless example: the best context match, whatever the word."
    keys = ("context_key",)

    def score(self, q: modes.Query) -> modes.Scored:
        contexts = q.bank.cached("context_only", lambda s: unit(s["context_key"]))
        return modes.Scored(unit(q.keys.context) @ contexts.T)


@pytest.fixture
def context_only(monkeypatch):
    monkeypatch.setitem(modes.REGISTRY, ContextOnly.name, ContextOnly())
    return ContextOnly.name


def test_a_registered_mode_answers_through_the_lab_and_its_carelessness_shows(tiny_lab, context_only):
    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, [("dax", "game A", "green"), ("wug", "game B", "cat")])
    assert context_only in modes.mode_names()
    written = tiny_lab.ask(bank, tiny_lab.question("dax", "game A"), mode=context_only, alpha=8.0, threshold=0.5)
    assert written.chosen == 0 and written.mode == context_only
    # an unwritten word in a written context: the careless mode injects dax's label, the default does not
    stranger = tiny_lab.question("fep", "game A")
    careless = tiny_lab.ask(bank, stranger, mode=context_only, alpha=8.0, threshold=0.5)
    assert careless.chosen == 0 and torch.isfinite(careless.scores).all()
    assert tiny_lab.ask(bank, stranger).chosen == -1


def test_a_mode_name_is_registered_once():
    with pytest.raises(ValueError, match="registered twice"):
        modes.register(type("Again", (modes.Mode,), {"name": "span_match"}))


@pytest.mark.parametrize("mode", ["span_match", "shuffled", "average", "both_top1"])
def test_each_entrys_logit_change_looked_up_once_answers_as_computing_it_does(tiny_lab, monkeypatch, mode):
    from fastmem.memory import engine

    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, [("dax", "game A", "green"), ("dax", "game B", "cat"), ("wug", "game A", "red")])
    prompts = [tiny_lab.question(w, c) for w, c in (("dax", "game A"), ("dax", "game B"), ("wug", "game A"),
                                                     ("wug", "game Z"))]
    states = engine.prompt_states(tiny_lab.lm, bank, prompts)
    s = tiny_lab.calibration.settings(mode)

    def run():
        return engine.answer(tiny_lab.lm, bank.snapshot(), tiny_lab.geometry, states, [p.context for p in prompts],
                             mode, s.alpha, s.threshold)

    looked_up = run()
    key = f"value_logits:{tiny_lab.lm.name}"
    assert (key in bank.stacked()) == modes.get_mode(mode).injects_entry_value  # average injects a mean
    monkeypatch.setattr(engine, "ENTRY_LOGITS_MAX", 0)
    tiny_lab.write(bank, [("wug", "game A", "red")])  # a new version of the memory: no table kept
    computed = run()
    assert key not in bank.stacked()
    torch.testing.assert_close(looked_up.logits, computed.logits)
    assert torch.equal(looked_up.ids, computed.ids) and torch.equal(looked_up.base_ids, computed.base_ids)
    on = looked_up.retrieved.chosen >= 0
    assert torch.equal(looked_up.ids[~on], looked_up.base_ids[~on])  # rows without memory keep the plain answer
    assert on.any() and not torch.equal(looked_up.logits[on], looked_up.base_logits[on])
