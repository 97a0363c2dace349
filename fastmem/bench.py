"""The post's experiment as a benchmark: every experiment x mode x metric, with Wilson intervals.

Each unique prompt goes through the model once; all modes are then scored from the cached states
(the correction is added after the final norm), so the model's forward time dominates.
"""
from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass
from importlib import resources

import torch

from .calibrate import Calibration, empty_bank
from .engine import answer, make_entries
from .lm import FrozenLM
from .prompts import render, unrelated_prompt
from .retrieval import MODES, KeyGeometry
from .stats import wilson
from .suite import Suite, bindings

METRICS = ("write", "read", "plain", "unrelated", "unchanged")
LOWER_IS_BETTER = ("plain", "unrelated")


@dataclass(frozen=True)
class Row:
    model: str
    experiment: str
    mode: str
    metric: str
    n: int
    hits: int
    rate: float
    ci_low: float
    ci_high: float
    seed: int
    key_layer: int
    symbol_layer: int
    context_layer: int
    value_steps: int
    alpha: float
    threshold: float | None
    post: float | None  # the reference post's figure (Pythia-70M), where it reports one


@dataclass
class Timing:
    forward_s: float = 0.0
    other_s: float = 0.0
    forward_passes: int = 0

    @property
    def total_s(self) -> float:
        return self.forward_s + self.other_s


def post_figures() -> dict[tuple[str, str, str], float]:
    text = resources.files("fastmem.data").joinpath("post_results.csv").read_text()
    out = {}
    for row in csv.DictReader(io.StringIO(text)):
        for metric in ("write", "read", "plain", "unrelated"):
            if row[metric]:
                out[(row["experiment"], row["mode"], metric)] = float(row[metric])
    return out


def run_bench(lm: FrozenLM, suite: Suite, cal: Calibration, geometry: KeyGeometry, experiments=None,
              modes=MODES, words_per_experiment: int | None = None, progress=None, should_stop=None,
              on_row=None) -> tuple[list[Row], Timing]:
    """Score test words. `progress(done, total)`; `should_stop()` ends early, keeping finished rows."""
    timing, rows, post = Timing(), [], post_figures()
    chosen = [suite.experiment(name) for name in experiments] if experiments else suite.experiments
    words = suite.split("test")[:words_per_experiment] if words_per_experiment else suite.split("test")
    unrelated = [unrelated_prompt(q) for q in suite.unrelated]
    per_exp = 2 * len(words) * 2 + len(words)
    total = len(chosen) * per_exp + len(unrelated)
    done = [0]

    def tick(n):
        done[0] += n
        if progress:
            progress(done[0], total)

    def forward(prompts):
        start = time.perf_counter()
        states = lm.states(prompts, progress=tick)
        timing.forward_s += time.perf_counter() - start
        timing.forward_passes += len(prompts)
        return states

    unrel_states = forward(unrelated)
    for exp in chosen:
        if should_stop and should_stop():
            break
        binds = bindings(exp, words)
        states = forward([b.write for b in binds] + [b.read for b in binds]
                         + [render(suite.plain, w.word) for w in words])
        start = time.perf_counter()
        n = len(binds)
        write, read, plain = states.select(slice(0, n)), states.select(slice(n, 2 * n)), states.select(slice(2 * n, None))
        bank = empty_bank(lm, cal)
        for entry in make_entries(lm, bank, write, [b.word for b in binds], [b.context for b in binds],
                                  [b.label for b in binds], [b.write for b in binds]):
            bank.add(entry)
        labels = bank.stacked()["label_id"]
        by_word = {}
        for e in bank.entries:
            by_word.setdefault(e.word, set()).add(e.label_id)
        all_labels = set(labels.tolist())
        contexts = [b.context for b in binds]
        groups = {"write": (write, contexts), "read": (read, contexts), "plain": (plain, [None] * len(words)),
                  "unrelated": (unrel_states, [None] * len(unrelated))}
        base = {name: lm.logits(st.final) for name, (st, _) in groups.items()}  # shared by every mode
        for mode in modes:
            s = cal.settings(mode)
            ids = {name: answer(lm, bank, geometry, st, ctx, mode, s.alpha, s.threshold, base[name]).ids
                   for name, (st, ctx) in groups.items()}
            hits = {"write": (int((ids["write"] == labels).sum()), n),
                    "read": (int((ids["read"] == labels).sum()), n),
                    "plain": (sum(int(i) in by_word[w.word] for i, w in zip(ids["plain"], words)), len(words)),
                    "unrelated": (sum(int(i) in all_labels for i in ids["unrelated"]), len(unrelated)),
                    "unchanged": (int((ids["unrelated"] == base["unrelated"].argmax(-1)).sum()), len(unrelated))}
            for metric in METRICS:
                h, total_n = hits[metric]
                lo, hi = wilson(h, total_n)
                row = Row(lm.name, exp.name, mode, metric, total_n, h, h / max(1, total_n), lo, hi, cal.seed,
                          cal.key_layer, cal.symbol_layer, cal.context_layer, cal.value_steps, s.alpha,
                          s.threshold, post.get((exp.name, mode, metric)))
                rows.append(row)
                if on_row:
                    on_row(row)
        timing.other_s += time.perf_counter() - start
    return rows, timing


def rows_to_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(Row.__dataclass_fields__))
    writer.writeheader()
    for r in rows:
        writer.writerow(asdict(r))
    return buf.getvalue()


def rows_to_json(rows: list[Row], timing: Timing | None = None, cal: Calibration | None = None) -> str:
    out = {"rows": [asdict(r) for r in rows]}
    if timing:
        out["timing"] = {**asdict(timing), "total_s": timing.total_s}
    if cal:
        out["calibration"] = json.loads(cal.to_json())
    return json.dumps(out, indent=1)


def format_table(rows: list[Row]) -> str:
    """The post's table layout: one line per (experiment, mode), rate [95% CI] per metric, post's figure."""
    lines = []
    keys = []
    for r in rows:
        if (r.experiment, r.mode) not in keys:
            keys.append((r.experiment, r.mode))
    head = f"{'experiment':<22}{'mode':<15}" + "".join(f"{m.capitalize():<24}" for m in METRICS) + "alpha  thr"
    lines.append(head)
    for exp, mode in keys:
        cells, s = [], None
        for metric in METRICS:
            match = [r for r in rows if (r.experiment, r.mode, r.metric) == (exp, mode, metric)]
            if not match:
                cells.append(f"{'':<24}")
                continue
            s = r = match[0]
            ref = f" ({r.post:.3f})" if r.post is not None else ""
            cells.append(f"{r.rate:.3f} [{r.ci_low:.2f},{r.ci_high:.2f}]{ref}".ljust(24))
        thr = "-" if s is None or s.threshold is None else f"{s.threshold:.2f}"
        lines.append(f"{exp:<22}{mode:<15}" + "".join(cells) + f"{s.alpha if s else 0:<7g}{thr}")
    return "\n".join(lines)
