"""The measurement runs, reached as `lab.runs`: the benchmark, the capacity curve, the baselines against memory
size, the operating curve and a suite's experiment binding by binding; and their rows as tables and files.
Each run writes into memories of its own, never into a user's."""
from __future__ import annotations

import json
from dataclasses import asdict


class Runs:
    from fastmem.eval.report import FOOTNOTE  # what a table's cells and marks mean

    def __init__(self, lab):
        from fastmem.eval.baselines import DEFAULT_MODES

        self.lab = lab
        self.baseline_modes = DEFAULT_MODES  # the modes the baselines run compares by default

    def bench(self, suite=None, experiments=None, modes=None, words: int | None = None, progress=None,
              should_stop=None, on_row=None, typed: bool = False, point: str | None = None):
        """(rows, timing) of the benchmark (`eval.bench.run_bench`) on `suite` (default: the lab's)."""
        from fastmem.eval.bench import run_bench
        from fastmem.memory.modes import MODES

        return run_bench(self.lab, suite, experiments, modes or MODES, words, progress, should_stop, on_row, typed,
                         point)

    def scale(self, sizes, sample: int = 128, mode: str | None = None, seed: int = 0, progress=None,
              should_stop=None):
        """(rows, timings) of one memory grown to each size (`eval.scale.run_scale`)."""
        from fastmem.eval.scale import run_scale
        from fastmem.memory.modes import DEFAULT_MODE

        return run_scale(self.lab, sizes, seed, sample, mode or DEFAULT_MODE, progress, should_stop)

    def baselines(self, sizes, modes=None, questions: int = 64, seed: int = 0, timed: int = 5, progress=None,
                  should_stop=None):
        """(rows, costs) of the memory against its baselines as bindings grow (`eval.baselines`)."""
        from fastmem.eval.baselines import DEFAULT_MODES, run_baselines

        return run_baselines(self.lab, sizes, modes or DEFAULT_MODES, seed, questions, timed, progress, should_stop)

    def curve(self, experiment: str, mode: str, words: int | None = None):
        from fastmem.eval.curve import operating_curve

        return operating_curve(self.lab, experiment, mode, words)

    def experiment(self, suite, experiment: str, n_words: int, mode: str | None = None) -> list:
        """One experiment of a suite, binding by binding, in a scratch memory (`eval.experiment`)."""
        from fastmem.eval.experiment import run_experiment
        from fastmem.memory.modes import DEFAULT_MODE, get_mode

        return run_experiment(self.lab, suite, experiment, n_words, get_mode(mode or DEFAULT_MODE).name)

    # -- the rows ----------------------------------------------------------------------------
    @staticmethod
    def csv(rows) -> str:
        from fastmem.eval.bench import rows_to_csv

        return rows_to_csv(rows)

    def json(self, rows, timing=None) -> str:
        from fastmem.eval.bench import rows_to_json

        return rows_to_json(rows, timing, self.lab.calibration)

    @staticmethod
    def sizes_json(rows, extra) -> str:
        """A size run's rows and its costs (baselines) or timings (capacity)."""
        return json.dumps({"rows": [asdict(r) for r in rows], "extra": [asdict(x) for x in extra]}, indent=1)

    @staticmethod
    def legend(rows) -> list[tuple[str, str]]:
        """(metric, what it means in plain words) for the metrics these rows hold, in the rows' order."""
        from fastmem.eval.metrics import MEANINGS, lower_is_better

        seen = dict.fromkeys(r.metric.split(":")[0] + ":*" if ":" in r.metric else r.metric for r in rows)
        return [(m + (" ↓" if not m.endswith("*") and lower_is_better(m) else ""), MEANINGS[m])
                for m in seen if m in MEANINGS]

    @staticmethod
    def table(rows, compact: bool = False):
        """The rows in the post's layout (one row per experiment and mode), as a pandas frame."""
        from fastmem.eval.report import compact_frame, pivot_frame

        return compact_frame(rows) if compact else pivot_frame(rows)

    @staticmethod
    def text_table(rows) -> str:
        from fastmem.eval.report import format_table

        return format_table(rows)

    @staticmethod
    def format_sizes(kind: str, rows, extra) -> str:
        from fastmem.eval.baselines import format_baselines
        from fastmem.eval.scale import format_scale

        return format_baselines(rows, extra) if kind == "baselines" else format_scale(rows, extra)
