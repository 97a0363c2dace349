"""Command line: `python -m fastmem bench|sweep|scale ...` (also installed as `fastmem`)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fastmem.errors import FastmemError
from fastmem.eval.calibrate import OPERATING_POINTS
from fastmem.eval.baselines import DEFAULT_MODES as BASELINE_MODES
from fastmem.memory.modes import DEFAULT_MODE, MODES, mode_names

BENCH_MODES = mode_names(answering=True)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2", help="Hugging Face id, local folder, .gguf file, or 'smollm2'")
    p.add_argument("--suite", default=None, help="suite file (JSON/YAML); default: the built-in suite")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--value-steps", type=int, default=8, help="1 = the post's one-step value")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                   help="the weights' type; auto: bfloat16 on a GPU, float32 on a CPU (bfloat16 is slower there)")
    p.add_argument("--no-cache", action="store_true", help="recalibrate even if a cached calibration exists")


def _setup(args):
    """The Lab the command runs on (model, suite, calibration), with what it is printed to stderr."""
    from fastmem.eval.calibration_cache import load_or_calibrate
    from fastmem.eval.suite import load_suite
    from fastmem.lab import Lab
    from fastmem.model.lm import FrozenLM

    torch.manual_seed(args.seed)
    suite = load_suite(args.suite)
    t0 = time.perf_counter()
    lm = FrozenLM.load(args.model, args.device, args.dtype)
    print(f"model {lm.name}: {lm.n_layers} layers, hidden {lm.hidden_size}, {lm.dtype}, on {lm.device} "
          f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    t0 = time.perf_counter()
    bar = tqdm(desc="calibrating on training words", unit="prompt", leave=False)
    cal, geometry = load_or_calibrate(lm, suite, args.value_steps, args.seed,
                                      progress=lambda n: bar.update(n), use_cache=not args.no_cache)
    bar.close()
    print(f"calibration: key layer {cal.key_layer}, symbol layer {cal.symbol_layer}, context layer "
          f"{cal.context_layer}, token layer {cal.token_layer}, value steps {cal.value_steps} "
          f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return Lab(lm, cal, geometry, suite)


def _write_json(path: str | None, data: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=1))


def cmd_bench(args) -> int:
    from fastmem.eval.bench import rows_to_csv, rows_to_json, run_bench
    from fastmem.eval.report import format_table

    lab = _setup(args)
    bar = tqdm(desc="benchmark", unit="prompt")

    def progress(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()

    start = time.perf_counter()
    rows, timing = run_bench(lab, None, args.experiments, args.modes, args.words, progress, typed=args.typed,
                             point=args.operating_point)
    wall = time.perf_counter() - start
    bar.close()
    cal = lab.calibration
    print(f"\n{lab.lm.name}, seed {args.seed}, value steps {cal.value_steps} (post's figures for Pythia-70M in "
          "brackets, next to rows at the post's operating point)")
    print(format_table(rows))
    print(f"\nforward passes: {timing.forward_passes}; wall {wall:.1f} s = {timing.describe()}")
    if args.out:
        Path(args.out).write_text(rows_to_csv(rows))
    if args.json:
        Path(args.json).write_text(rows_to_json(rows, timing, cal))
    return 0


def cmd_sweep(args) -> int:
    args.no_cache = True
    print(_setup(args).calibration.to_json())
    return 0


def cmd_scale(args) -> int:
    from fastmem.eval.scale import format_scale, run_scale

    lab = _setup(args)
    start = time.perf_counter()
    points, timings = run_scale(lab, args.sizes, args.seed, args.sample, args.mode,
                                progress=lambda done, total, msg: print(msg, file=sys.stderr))
    print(f"\n{lab.lm.name}, seed {args.seed}, mode {args.mode}, {args.sample} sampled words per size, value steps "
          f"{lab.calibration.value_steps} ({time.perf_counter() - start:.0f} s)")
    print(format_scale(points, timings))
    _write_json(args.json, {"points": [asdict(p) for p in points], "timings": [asdict(t) for t in timings]})
    return 0


def cmd_baselines(args) -> int:
    from fastmem.eval.baselines import format_baselines, run_baselines

    lab = _setup(args)
    start = time.perf_counter()
    rows, costs = run_baselines(lab, args.sizes, args.modes, args.seed, args.questions, args.timed,
                                progress=lambda done, total, msg: print(msg, file=sys.stderr))
    print(f"\n{lab.lm.name}, seed {args.seed}, {args.questions} written bindings asked per size, cost: median of "
          f"{args.timed} single questions ({time.perf_counter() - start:.0f} s)")
    print(format_baselines(rows, costs))
    _write_json(args.json, {"rows": [asdict(r) for r in rows], "costs": [asdict(c) for c in costs]})
    return 0


def cmd_curve(args) -> int:
    from fastmem.eval.curve import format_curve, operating_curve

    lab = _setup(args)
    points = operating_curve(lab, args.experiment, args.mode, args.words)
    s = lab.calibration.settings(args.mode)
    print(f"\n{lab.lm.name}, seed {args.seed}, {args.experiment}, mode {args.mode} (alpha {s.alpha:g}, calibrated "
          f"threshold {s.threshold}), test words: {args.words or 'all'}")
    print(format_curve(points))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastmem", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="run the post's experiment and print the table")
    _common(bench)
    bench.add_argument("--modes", nargs="+", default=list(MODES), choices=BENCH_MODES,
                       help="default: every memory mode; in_context_all and in_context_word (the in-context "
                            "baselines, about 20 minutes on a 2-core CPU) run when named")
    bench.add_argument("--experiments", nargs="+", default=None)
    bench.add_argument("--words", type=int, default=None, help="test words per experiment (default: all)")
    bench.add_argument("--operating-point", default=None, choices=OPERATING_POINTS,
                       help="every mode at this point (default: the post's modes at post, the others at selective)")
    bench.add_argument("--typed", action="store_true",
                       help="also ask every question as people type it (10 natural forms, 8 variations)")
    bench.add_argument("--out", default=None, help="CSV file for the rows")
    bench.add_argument("--json", default=None, help="JSON file for rows, timing and calibration")
    bench.set_defaults(func=cmd_bench)
    scale = sub.add_parser("scale", help="one memory of N bindings: metrics, write and retrieval time per size")
    _common(scale)
    scale.add_argument("--sizes", nargs="+", type=int, default=[100, 1000, 10000])
    scale.add_argument("--sample", type=int, default=128, help="written words asked per size")
    scale.add_argument("--mode", default=DEFAULT_MODE, choices=MODES)
    scale.add_argument("--json", default=None, help="JSON file for the points and timings")
    scale.set_defaults(func=cmd_scale)
    base = sub.add_parser("baselines", help="memory vs in-context and codebook as bindings grow: metrics and cost")
    _common(base)
    base.add_argument("--sizes", nargs="+", type=int, default=[2, 10, 100, 1000])
    base.add_argument("--modes", nargs="+", default=list(BASELINE_MODES), choices=BENCH_MODES)
    base.add_argument("--questions", type=int, default=64, help="written bindings asked per size")
    base.add_argument("--timed", type=int, default=5, help="single questions timed per size and mode")
    base.add_argument("--json", default=None, help="JSON file for the rows and costs")
    base.set_defaults(func=cmd_baselines)
    curve = sub.add_parser("curve", help="Read against false fires as the threshold moves (one experiment)")
    _common(curve)
    curve.add_argument("--experiment", default="new lab north/south")
    curve.add_argument("--mode", default=DEFAULT_MODE, choices=MODES)
    curve.add_argument("--words", type=int, default=None)
    curve.set_defaults(func=cmd_curve)
    sweep = sub.add_parser("sweep", help="choose layers, alpha and threshold per mode on training words")
    _common(sweep)
    sweep.set_defaults(func=cmd_sweep)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except FastmemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
