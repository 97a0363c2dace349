"""The benchmark over several seeds: each seed samples its own suite (the built-in suite's words and labels,
`make_builtin_suite(seed=s)`) and its own calibration (projector, look-alikes), then the same benchmark runs.
Prints mean and min-max per experiment, mode and metric (`fastmem.eval.report.seed_spread`).

    python scripts/seeds.py --seeds 0 1 2 --modes none token_match dual_key shuffled [--json seeds.json]
"""
import argparse
import json
from dataclasses import asdict

from fastmem.eval.bench import run_bench
from fastmem.eval.calibration_cache import load_or_calibrate
from fastmem.lab import Lab
from fastmem.model.lm import FrozenLM
from fastmem.eval.metrics import lower_is_better
from fastmem.eval.report import seed_spread
from fastmem.eval.suite import make_builtin_suite

METRICS = ("write", "read", "plain", "wrong_context", "lookalike", "kept")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--modes", nargs="+", default=["none", "token_match", "dual_key", "shuffled"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    lm = FrozenLM.load(args.model)
    rows = []
    for seed in args.seeds:
        suite = make_builtin_suite(seed=seed)
        cal, geometry = load_or_calibrate(lm, suite, 8, seed, show_progress=False)
        got, _ = run_bench(Lab(lm, cal, geometry, suite), suite, modes=args.modes)
        rows += got
        print(f"seed {seed}: {len(got)} rows; token_match α {cal.settings('token_match').alpha:g}, threshold "
              f"{cal.settings('token_match').threshold}, token layer {cal.token_layer}", flush=True)
    spread = seed_spread(rows)
    spread = spread[spread.metric.isin(METRICS)]
    print(f"\n{lm.name}, seeds {args.seeds}: mean [min-max] over seeds")
    print("| experiment | mode | " + " | ".join(m + (" ↓" if lower_is_better(m) else "") for m in METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    for (exp, mode), part in spread.groupby(["experiment", "mode"], sort=False):
        cells = {r.metric: f"{r.mean:.3f} [{r.low:.3f}-{r.high:.3f}]" for r in part.itertuples()}
        print(f"| {exp} | {mode} | " + " | ".join(cells.get(m, "–") for m in METRICS) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": [asdict(r) for r in rows]}, f, indent=1)


if __name__ == "__main__":
    main()
