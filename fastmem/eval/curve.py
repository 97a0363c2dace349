"""Operating points: Read (and the paraphrases) against false fires as the threshold moves, on one
experiment's test probes. It shows where a mode's selectivity stops; calibration never uses it."""
from __future__ import annotations

from dataclasses import dataclass

from fastmem.eval.probesets import experiment_probes
from fastmem.eval.calibrate import empty_bank
from fastmem.memory.engine import prompt_states, write_entries
from fastmem.eval.metrics import PARAPHRASE, Sweep

THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(2, 20))


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    read: float
    paraphrase: float  # mean over the paraphrase forms
    wrong_context: float
    lookalike: float
    plain: float
    sibling: float = 0.0


def operating_curve(lab, experiment: str, mode: str, words: int | None = None,
                    thresholds=THRESHOLDS) -> list[OperatingPoint]:
    lm, suite, cal, geometry = lab.lm, lab.suite, lab.calibration, lab.geometry
    exp = suite.experiment(experiment)
    test = suite.split("test")[:words] if words else suite.split("test")
    binds, sets = experiment_probes(lm, suite, exp, test, cal.seed)
    bank = empty_bank(lm, cal)
    write_entries(lm, bank, [b.write for b in binds], [b.word for b in binds], [b.context for b in binds],
                  [b.label for b in binds])
    alpha = cal.settings(mode).alpha
    sweep = Sweep(lm, bank, geometry, mode, [(s, prompt_states(lm, bank, list(s.prompts))) for s in sets
                                             if s.metric != "write"])
    points = []
    for t in thresholds:
        rates = sweep.rates(alpha, t)
        para = [v for k, v in rates.items() if k.startswith(PARAPHRASE)]
        points.append(OperatingPoint(t, rates["read"], sum(para) / max(1, len(para)), rates["wrong_context"],
                                     rates["lookalike"], rates["plain"], rates.get("sibling", 0.0)))
    return points


def format_curve(points: list[OperatingPoint]) -> str:
    lines = ["| threshold | read | paraphrases (mean) | wrong context ↓ | sibling ↓ | lookalike ↓ | plain ↓ |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {p.threshold:.2f} | {p.read:.3f} | {p.paraphrase:.3f} | {p.wrong_context:.3f} | {p.sibling:.3f} "
              f"| {p.lookalike:.3f} | {p.plain:.3f} |" for p in points]
    return "\n".join(lines)


__all__ = ["OperatingPoint", "operating_curve", "format_curve"]
