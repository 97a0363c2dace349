"""bfloat16 against float32 weights: the same batched forward passes, alternating, in one process.

    python scripts/bf16_forward.py [--model smollm2] [--n 128] [--repeats 3]

Prints whether the CPU reports native bfloat16 (AVX-512 BF16, AMX), each dtype's median per statement and the
ratio; `--dtype auto` takes bfloat16 only on a GPU because of what this prints on a CPU.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fastmem.eval.suite import bindings, load_suite
from fastmem.model.lm import FrozenLM


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    suite = load_suite()
    prompts = [b.write for b in bindings(suite.experiments[0], suite.split("test") + suite.split("train"))][:args.n]
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    native = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    lms = {d: FrozenLM.load(args.model, "cpu", d) for d in ("float32", "bfloat16")}
    times: dict[str, list[float]] = {d: [] for d in lms}
    for lm in lms.values():
        lm.bare_forward(prompts[:64])  # warm-up
    for _ in range(args.repeats):
        for d, lm in lms.items():
            start = time.perf_counter()
            lm.bare_forward(prompts)
            times[d].append(time.perf_counter() - start)
    print(f"{args.model}, {len(prompts)} statements, {args.repeats} alternating repeats, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}, native bfloat16: {', '.join(native) or 'none'}")
    for d, got in times.items():
        print(f"{d:9s} median {1000 * statistics.median(got) / len(prompts):.1f} ms / statement  runs "
              f"{[round(x, 2) for x in got]}")
    print(f"bfloat16 / float32 = {statistics.median(times['bfloat16']) / statistics.median(times['float32']):.2f}")


if __name__ == "__main__":
    main()
