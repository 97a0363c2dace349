"""Races between a memory's changes and the keys read again for it in the background (issue: an entry removed while
an imported memory's keys were re-read shifted every key by one position, and every answer was wrong for good).

Eight threads share one memory opened from a file (no keys stored). They remove, write, switch and re-open churn
entries (re-opening replaces entries by keyless ones, so keys are read again and again) while they ask about probe
entries that stay in every version. Each answer must be the one the memory gives when asked alone: the asked entry
chosen, the same answer tokens. A key attached by position to whatever entries exist by then fails this at once.
"""
from __future__ import annotations

import random
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from fastmem.eval.suite import LABELS
from fastmem.memory.file import from_bytes

THREADS, OPERATIONS = 8, 10_000
MODES = ("token_match", "dual_key", "raw_both_top1")


@pytest.fixture(scope="module")
def opened(tiny_lab):
    """(the file, the probe rows that every version keeps, the churn rows the threads change)."""
    words = [w.word for w in tiny_lab.suite.words[:12]]
    rows = [(w, c, LABELS[(2 * i + j) % len(LABELS)]) for i, w in enumerate(words)
            for j, c in enumerate(("game A", "game B"))]
    bank = tiny_lab.new_memory()
    tiny_lab.write(bank, rows)
    return tiny_lab.export_memory(bank), rows[-8:], rows[:-8]  # churn first: a removal moves every probe


def _reference(lab, data, probes):
    bank = lab.import_memory(data)
    out = {}
    for mode in MODES:
        for w, c, _ in probes:
            r = lab.ask(bank, lab.question(w, c), mode=mode, threshold=None)
            assert r.chosen_slot == (w, c), (mode, w, c, r.chosen_slot)  # asked alone, every probe is found
            out[(mode, w, c)] = r.answer_ids
    return out


def _operation(lab, bank, data, probes, churn, rnd, errors):
    """One random operation; an ask is checked against the memory asked alone."""
    kind = rnd.random()
    if kind < 0.25:
        mode, (w, c, _) = rnd.choice(MODES), rnd.choice(probes)
        r = lab.ask(bank, lab.question(w, c), mode=mode, threshold=None)
        return ("ask", mode, w, c, r.chosen_slot, r.answer_ids)
    if kind < 0.5:
        slots = [e.slot for e in bank.entries if e.slot in {(w, c) for w, c, _ in churn}]
        if slots:
            at = bank.find(*rnd.choice(slots))
            if at is not None:
                try:
                    bank.remove(at)
                except Exception as exc:  # noqa: BLE001 - another thread removed it first: a refusal, not a fault
                    if "No memory entry" not in str(exc):
                        errors.append(repr(exc))
        return None
    if kind < 0.65:
        lab.write(bank, [rnd.choice(churn)])
        return None
    if kind < 0.95:
        at = bank.find(*rnd.choice(churn)[:2])
        if at is not None:
            try:
                bank.set_enabled(at, rnd.random() < 0.5)
            except Exception as exc:  # noqa: BLE001
                if "No memory entry" not in str(exc):
                    errors.append(repr(exc))
        return None
    fresh, _ = from_bytes(data)  # keyless entries replace what is there: the keys must be read again
    bank.add_many(fresh.entries)
    return None


def test_background_rekeys_never_give_an_entry_another_entrys_keys(tiny_lab, opened):
    data, probes, churn = opened
    reference = _reference(tiny_lab, data, probes)
    bank = tiny_lab.import_memory(data)
    errors, seed = [], random.randrange(2**31)
    print(f"race seed {seed}")
    before, torch_threads = sys.getswitchinterval(), torch.get_num_threads()
    sys.setswitchinterval(1e-3)  # switch threads often, so operations really interleave
    torch.set_num_threads(1)  # eight Python threads already: intra-op threads would only spin against them

    def worker(t: int):
        rnd, seen = random.Random(seed + t), []
        for _ in range(OPERATIONS // THREADS):
            try:
                got = _operation(tiny_lab, bank, data, probes, churn, rnd, errors)
            except Exception as exc:  # noqa: BLE001 - any exception is a failure, collected with its thread
                errors.append(f"thread {t}: {exc!r}")
                continue
            if got is not None:
                seen.append(got)
        return seen

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            asks = [a for seen in pool.map(worker, range(THREADS)) for a in seen]
    finally:
        sys.setswitchinterval(before)
        torch.set_num_threads(torch_threads)
    assert errors == [], errors[:5]
    wrong = [a for a in asks if a[4] != (a[2], a[3]) or a[5] != reference[(a[1], a[2], a[3])]]
    assert wrong == [], (len(wrong), len(asks), wrong[:3])
    assert len(asks) > 1_000  # the asks really ran among the changes
