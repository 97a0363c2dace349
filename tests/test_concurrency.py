"""Sessions stay apart: one shared model and Lab, one memory per session, many threads at once.

Every session writes the *same* words with its *own* labels, so any leak between memories changes
an answer. Each session's answers under concurrency must equal those of the same session run alone.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from fastmem.eval.suite import LABELS

THREADS = 8

ASKED_MODES = ("token_match", "dual_key", "raw_both_top1")


def foreign_hooks(model: torch.nn.Module) -> list:
    """Hooks other than transformers' own output-capturing ones (installed once by transformers 5 on the
    first `output_hidden_states` call; inert unless a context-local collector is active)."""
    hooks = [h for m in model.modules() for d in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks)
             for h in d.values()]
    return [h for h in hooks if "install_output_capuring_hook" not in getattr(h, "__qualname__", "")]


def no_hooks(model: torch.nn.Module) -> bool:
    return not foreign_hooks(model)


def session_rows(i: int, words: list[str], contexts: list[str], labels: list[str]) -> list[tuple[str, str, str]]:
    return [(w, contexts[k % len(contexts)], labels[(i + 3 * k) % len(labels)]) for k, w in enumerate(words)]


def run_session(lab, rows, barrier=None, rounds: int = 2):
    """Write this session's rows (in two steps), then ask every question in two modes; return what it saw."""
    if barrier is not None:
        barrier.wait(timeout=120)
    bank = lab.new_memory()
    out = []
    for r in range(rounds):
        results = lab.write(bank, rows[r::rounds])
        out.append(tuple((w.word, w.context, w.label, w.status) for w in results))
        for word, context, _ in rows:
            for mode in ASKED_MODES:
                got = lab.ask(bank, lab.parse_question(f"Question: in {context}, what is {word}? Answer:"), mode=mode)
                out.append((mode, word, context, got.chosen, got.answer, got.base_answer, got.logits))
    return out, lab.export_memory(bank)


def check_sessions(lab, all_rows):
    model = lab.lm.model
    assert no_hooks(model)
    alone = [run_session(lab, rows) for rows in all_rows]
    barrier = threading.Barrier(len(all_rows))
    with ThreadPoolExecutor(max_workers=len(all_rows)) as pool:
        together = list(pool.map(lambda rows: run_session(lab, rows, barrier), all_rows))
    assert no_hooks(model)
    for i, ((seen_alone, file_alone), (seen_together, file_together)) in enumerate(zip(alone, together)):
        assert file_together == file_alone, f"session {i}: its memory differs when run concurrently"
        assert len(seen_alone) == len(seen_together)
        for a, b in zip(seen_alone, seen_together):
            if isinstance(a[-1], torch.Tensor):
                assert a[:-1] == b[:-1], f"session {i}: {a[:-1]} alone, {b[:-1]} concurrently"
                torch.testing.assert_close(a[-1], b[-1], rtol=1e-4, atol=1e-4)
            else:
                assert a == b
    # the sessions really differ from each other (so a leak would have shown)
    assert len({f for _, f in alone}) == len(all_rows)
    return alone


def test_sessions_stay_apart_tiny(tiny_lab):
    words = ["blicket", "dax", "wug", "toma"]
    rows = [session_rows(i, words, ["game A", "game B"], list(LABELS[:12])) for i in range(THREADS)]
    alone = check_sessions(tiny_lab, rows)
    assert all(len(seen) == 2 + len(ASKED_MODES) * 2 * len(words) for seen, _ in alone)


@pytest.mark.integration
def test_sessions_stay_apart_smollm2(smollm2_lab):
    words = [w.word for w in smollm2_lab.suite.split("test")[:2]]
    rows = [session_rows(i, words, ["game A", "game B"], ["red", "blue", "green", "cat", "dog", "fish", "king",
                                                           "boat"]) for i in range(THREADS)]
    check_sessions(smollm2_lab, rows)
