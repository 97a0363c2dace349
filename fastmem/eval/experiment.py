"""A user's suite, binding by binding: write one experiment's bindings into a scratch memory, read each back,
and say for every failure what was retrieved instead and by how much. Hits use the benchmark's rule."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastmem.memory.engine import answer, prompt_states
from fastmem.memory.explain import explain, found_entries
from fastmem.errors import SuiteError
from fastmem.eval.metrics import LabelIndex, hit_mask, probe_set
from fastmem.memory.prompts import render
from fastmem.eval.metrics import read_answers
from fastmem.memory.readout import decoded
from fastmem.eval.suite import Suite


@dataclass(frozen=True)
class BindingResult:
    word: str
    context: str
    label: str
    ok: bool  # the read question was answered with the label (the benchmark's `read` rule)
    answer: str  # the first answer token with memory
    retrieved: str  # "word · context → label" of the injected entry, or "nothing"
    margin: float | None  # score of the right entry minus the retrieved one (right: minus the runner-up)
    note: str  # the write error, or why this entry was (or nothing was) injected


def run_experiment(lab, suite: Suite, experiment: str, n_words: int, mode: str) -> list[BindingResult]:
    exp = suite.experiment(experiment)
    words = (suite.split("test") or suite.words)[:max(1, int(n_words))]
    rows = [(w.word, ctx, w.labels[i]) for w in words for i, ctx in enumerate(exp.contexts)]
    scratch = lab.new_memory()
    written = lab.write(scratch, rows, template=exp.write)
    good = [w for w in written if w.status != "error"]
    out = {(w.word, w.context): BindingResult(w.word, w.context, w.label, False, "", "nothing", None, w.error or "")
           for w in written if w.status == "error"}
    if good:
        reads = probe_set("read", [render(exp.read, w.word, w.context) for w in good], [w.label for w in good])
        states = prompt_states(lab.lm, scratch, list(reads.prompts))
        s = lab.calibration.settings(mode)
        got = answer(lab.lm, scratch, lab.geometry, states, list(reads.contexts), mode, s.alpha, s.threshold)
        labels = LabelIndex.of(scratch)
        answers = read_answers(lab.lm, scratch, reads, got, s.alpha)
        hits = hit_mask(reads, answers.ids, answers.base_ids, labels, lab.lm)
        for i, w in enumerate(good):
            scores, chosen = got.retrieved.scores[i], int(got.retrieved.chosen[i])
            right = scratch.find(w.word, w.context)
            entry = scratch.entries[chosen] if chosen >= 0 else None
            out[(w.word, w.context)] = BindingResult(
                w.word, w.context, w.label, bool(hits[i]), lab.lm.tokenizer.decode(decoded(answers.ids[i])),
                f"{entry.word} · {entry.context} → {entry.label}" if entry else "nothing",
                _margin(scores, right, chosen), explain(scratch, reads.prompts[i], mode, scores, chosen, s.threshold,
                                                        _found(lab, scratch, reads.prompts[i], got.retrieved, i)))
    if not out:
        raise SuiteError(f"Experiment {experiment!r} has no bindings to run.")
    return [out[(w.word, w.context)] for w in written]


def _found(lab, bank, prompt, retrieved, row: int):
    """Where slot-free reading found the best entries in question `row` (None for the other modes), as the
    Inspect page shows it."""
    if retrieved.spans is None:
        return None
    offsets = lab.lm.encode(prompt).offsets
    return found_entries(bank, prompt.text, offsets, retrieved.spans.select(row), int(retrieved.chosen[row]))


def _margin(scores: torch.Tensor, right: int | None, chosen: int) -> float | None:
    if right is None or chosen < 0 or not torch.isfinite(scores[right]):
        return None
    if chosen != right:
        return float(scores[right] - scores[chosen])
    others = torch.cat([scores[:right], scores[right + 1:]])
    others = others[torch.isfinite(others)]
    return float(scores[right] - (others.max() if len(others) else 0.0))
