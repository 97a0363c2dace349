"""What a calibration decided, recorded so that a change of behaviour that forgot to bump `CALIBRATION_VERSION` fails.

The calibration key (`calibration_cache.cache_key`) holds no source bytes, so a comment or a refactor needs no new
calibration. Two records catch the other case, a change that alters what calibration or retrieval decides:
- `summary(cal)`: the layers and every mode's alpha and threshold at both operating points, and the dev rates they
  were chosen on. The tiny test model is recalibrated in every test run and compared with its stored summary
  (`tests/data/tiny_calibration.json`).
- `verdicts(lab)`: a fixed sample of questions asked through `Lab.ask` in several modes under the shipped
  calibration (which entry was chosen, its score, the answer's tokens), stored beside the shipped calibration and
  asked again by an integration test. A verdict too close to call (a score within `SCORE_MARGIN` of its threshold,
  or an answer whose top two logits are within `LOGIT_MARGIN`) is recorded but not compared: float32 rounding
  differs between CPUs.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict

import torch

from fastmem.eval.calibrate import CALIBRATION_VERSION, Calibration

SCORE_MARGIN = 0.02
LOGIT_MARGIN = 0.05
VERDICT_MODES = ("span_match", "token_match", "dual_key", "both_top1", "context_gate", "codebook")


def summary(cal: Calibration) -> dict:
    """The decisions of a calibration, as JSON-ready data (rates rounded to 6 places)."""
    raw = asdict(cal)
    points = {p: {m: [s["alpha"], s["threshold"]] for m, s in modes.items()} for p, modes in raw["points"].items()}
    dev = {p: {m: {k: round(float(v), 6) for k, v in rates.items()} for m, rates in modes.items()}
           for p, modes in raw["dev_scores"].items()}
    return {"calibration_version": CALIBRATION_VERSION, "model_name": cal.model_name,
            "layers": {"key": cal.key_layer, "symbol": cal.symbol_layer, "context": cal.context_layer,
                       "token": cal.token_layer},
            "value_steps": cal.value_steps, "seed": cal.seed, "points": points, "dev_scores": dev}


def summary_differences(now: dict, recorded: dict, tolerance: float = 1e-6) -> list[str]:
    """What differs between two summaries, one line each (empty: the same decisions)."""
    out = []
    for key in ("calibration_version", "model_name", "layers", "value_steps", "seed", "points"):
        if json.loads(json.dumps(now.get(key))) != recorded.get(key):
            out.append(f"{key}: now {now.get(key)}, recorded {recorded.get(key)}")
    for point, modes in recorded.get("dev_scores", {}).items():
        for mode, rates in modes.items():
            got = now.get("dev_scores", {}).get(point, {}).get(mode, {})
            for metric, rate in rates.items():
                if metric not in got or abs(got[metric] - rate) > tolerance:
                    out.append(f"dev {point}/{mode}/{metric}: now {got.get(metric)}, recorded {rate}")
    return out


def sample_rows(lab, n_words: int = 6) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The memory and the questions of the verdict sample: test words in game A/B, asked in their contexts, in a
    context never written, without context, and in typed forms."""
    words = lab.suite.split("test")[:n_words]
    rows = [(w.word, c, w.labels[i]) for w in words for i, c in enumerate(("game A", "game B"))]
    questions = []
    for w in words:
        questions += [f"Question: in game A, what is {w.word}? Answer:", f"What does {w.word} mean in game B?",
                      f"Question: in game Z, what is {w.word}? Answer:", f"Question: what is {w.word}? Answer:"]
    return rows, questions


def verdicts(lab) -> list[dict]:
    """Each sample question asked through `Lab.ask` in each of `VERDICT_MODES`, with its default settings."""
    rows, questions = sample_rows(lab)
    bank = lab.new_memory()
    lab.write(bank, rows)
    out = []
    for mode in VERDICT_MODES:
        for q in questions:
            r = lab.ask(bank, q, mode=mode)
            top2 = torch.topk(r.logits.float(), 2).values
            out.append({"mode": mode, "question": q, "alpha": r.alpha, "threshold": r.threshold,
                        "chosen": r.chosen, "best": round(r.best, 6) if math.isfinite(r.best) else None,
                        "answer_ids": list(r.answer_ids), "logit_margin": round(float(top2[0] - top2[1]), 6)})
    return out


def verdict_differences(now: list[dict], recorded: list[dict]) -> tuple[list[str], int]:
    """(what differs, how many verdicts were clear enough to compare)."""
    out, compared = [], 0
    if len(now) != len(recorded):
        return [f"{len(now)} verdicts now, {len(recorded)} recorded"], 0
    for a, b in zip(now, recorded):
        where = f"{b['mode']} | {b['question']!r}"
        if (a["alpha"], a["threshold"]) != (b["alpha"], b["threshold"]):
            out.append(f"{where}: settings {a['alpha']}/{a['threshold']}, recorded {b['alpha']}/{b['threshold']}")
            continue
        thr, best = b["threshold"], b["best"]
        if best is not None and thr is not None and abs(best - thr) < SCORE_MARGIN:
            continue  # too close to call on another CPU
        compared += 1
        if a["chosen"] != b["chosen"]:
            out.append(f"{where}: chose {a['chosen']}, recorded {b['chosen']}")
        elif best is not None and a["best"] is not None and abs(a["best"] - best) > 1e-3:
            out.append(f"{where}: score {a['best']}, recorded {best}")
        elif b["logit_margin"] > LOGIT_MARGIN and a["answer_ids"] != b["answer_ids"]:
            out.append(f"{where}: answer {a['answer_ids']}, recorded {b['answer_ids']}")
    return out, compared
