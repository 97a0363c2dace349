"""The default benchmark on float32 and on bfloat16 weights, side by side in one process.

    python scripts/bf16_bench.py [--model smollm2] [--seed 0] [--modes ...] [--json docs/results/bf16.json]

Each dtype gets what a user of `--dtype` gets: its own calibration (cached per dtype, `load_or_calibrate`) and
the same benchmark (`run_bench`, the app's read path). Prints each dtype's calibration and forward time, then
every row whose bfloat16 rate falls outside float32's 95% Wilson interval, and how many rows' hit counts moved.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fastmem.eval.bench import run_bench
from fastmem.eval.calibration_cache import load_or_calibrate
from fastmem.eval.suite import load_suite
from fastmem.lab import Lab
from fastmem.memory.modes import MODES
from fastmem.model.lm import FrozenLM

DTYPES = ("float32", "bfloat16")


def _key(row) -> tuple:
    return row.experiment, row.mode, row.metric, row.form


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", nargs="+", default=list(MODES))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    suite = load_suite()
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    native = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    runs, out = {}, {"model": args.model, "seed": args.seed, "threads": torch.get_num_threads(),
                     "native_bf16": native, "torch": torch.__version__, "dtypes": {}}
    for dtype in DTYPES:
        torch.manual_seed(args.seed)
        lm = FrozenLM.load(args.model, "cpu", dtype)
        start = time.perf_counter()
        cal, geometry = load_or_calibrate(lm, suite, 8, args.seed, show_progress=False)
        cal_s = time.perf_counter() - start
        start = time.perf_counter()
        rows, timing = run_bench(Lab(lm, cal, geometry, suite), suite, modes=args.modes)
        wall = time.perf_counter() - start
        runs[dtype] = {_key(r): r for r in rows}
        out["dtypes"][dtype] = {"calibration": json.loads(cal.to_json()), "calibration_s": cal_s, "wall_s": wall,
                                "timing": asdict(timing), "rows": [asdict(r) for r in rows]}
        print(f"{dtype}: calibration {cal_s:.0f} s (key {cal.key_layer}, symbol {cal.symbol_layer}, context "
              f"{cal.context_layer}, token {cal.token_layer}); benchmark {wall:.0f} s, forward {timing.forward_s:.0f} s,"
              f" {len(rows)} rows", flush=True)
        del lm
    f32, b16 = runs["float32"], runs["bfloat16"]
    common = [k for k in f32 if k in b16]
    moved = [k for k in common if f32[k].hits != b16[k].hits or f32[k].n != b16[k].n]
    outside = [k for k in common if not f32[k].ci_low <= b16[k].rate <= f32[k].ci_high]
    fw = {d: out["dtypes"][d]["timing"]["forward_s"] for d in DTYPES}
    print(f"\n{args.model}, seed {args.seed}, {out['threads']} threads, torch {torch.__version__}, native bfloat16: "
          f"{', '.join(native) or 'none'}; forward bfloat16 / float32 = {fw['bfloat16'] / max(fw['float32'], 1e-9):.2f}")
    print(f"{len(common)} rows in both; hit counts moved in {len(moved)}; bfloat16 outside float32's 95% interval in "
          f"{len(outside)}:")
    print("| experiment | mode | metric | float32 [95%] | bfloat16 | α f32 / bf16 | threshold f32 / bf16 |")
    print("|---|---|---|---|---|---|---|")
    for k in outside:
        a, b = f32[k], b16[k]
        form = f" ({a.form})" if a.form else ""
        print(f"| {a.experiment}{form} | {a.mode} | {a.metric} | {a.rate:.3f} [{a.ci_low:.2f}, {a.ci_high:.2f}] | "
              f"{b.rate:.3f} | {a.alpha:g} / {b.alpha:g} | {a.threshold} / {b.threshold} |")
    out["moved"] = [list(k) for k in moved]
    out["outside"] = [list(k) for k in outside]
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
