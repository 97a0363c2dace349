"""A batched write against a bare batched forward pass of the same statements, side by side in one process.

`Lab.write` of N bindings (one forward pass over the statements with every hidden state kept, the values refined
through the output head, the entries added) is timed against the model alone on the same statements: the same
batches of 64 sorted by length, left padding, no hidden states kept. The two alternate `--repeats` times; the
medians and their ratio are printed (the issue's target: write ≤ 1.2 × forward).

    python scripts/write_vs_forward.py [--model smollm2] [--n 256] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fastmem.eval.suite import bindings
from fastmem.lab import Lab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    lab = Lab.load(args.model)
    experiment = lab.suite.experiments[0]
    words = lab.suite.split("test") + lab.suite.split("train")
    rows = bindings(experiment, words)[:args.n]
    prompts = [b.write for b in rows]
    write_s, forward_s = [], []
    lab.lm.bare_forward(prompts[:64])  # warm-up
    for _ in range(args.repeats):
        start = time.perf_counter()
        lab.write(lab.new_memory(), [(b.word, b.context, b.label) for b in rows], template=experiment.write)
        write_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        lab.lm.bare_forward(prompts)
        forward_s.append(time.perf_counter() - start)
    w, f = statistics.median(write_s), statistics.median(forward_s)
    print(f"{args.model}, {len(rows)} statements ({experiment.name}), {args.repeats} alternating repeats, "
          f"{torch.get_num_threads()} threads")
    print(f"write   median {w:.2f} s ({1000 * w / len(rows):.1f} ms / binding)  runs {[round(x, 2) for x in write_s]}")
    print(f"forward median {f:.2f} s ({1000 * f / len(rows):.1f} ms / statement)  runs {[round(x, 2) for x in forward_s]}")
    print(f"write / forward = {w / f:.2f}")


if __name__ == "__main__":
    main()
