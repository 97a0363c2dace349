"""Retrieval latency for memories of 1, 1,000 and 100,000 synthetic entries.

Entries are random vectors (retrieval cost does not depend on what the vectors mean), at the tiny test
model's hidden size (32) and at SmolLM2-135M's (576). Timed: one question against the whole memory,
scoring + top-1 + value pick (fastmem.retrieval.retrieve), per mode, after the memory's stacked tensors
are built once (`stack` column: that one-off cost after each change to the memory).

    python scripts/bench_retrieval.py [--sizes 1 1000 100000] [--hidden 32 576] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fastmem.memory import MemoryBank, MemoryEntry
from fastmem.projector import KeyProjector, ProjectorConfig
from fastmem.retrieval import KeyGeometry, QueryKeys, retrieve

MODES = ("raw_both_top1", "dual_key", "both_top1", "context_gate", "average")


def synthetic_bank(n: int, d: int, seed: int = 0) -> MemoryBank:
    g = torch.Generator().manual_seed(seed)
    bank = MemoryBank("synthetic", d, 3, 1, 1, 8)
    t = {f: torch.randn(n, d, generator=g) for f in ("key", "context_key", "symbol_key", "value")}
    bank.entries = [MemoryEntry(f"w{i}", f"game {i % 4}", "red", 5, "In game A, w means", (11, 12), (3, 9),
                                t["key"][i], t["context_key"][i], t["symbol_key"][i], t["value"][i])
                    for i in range(n)]
    return bank


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 1000, 100_000])
    ap.add_argument("--hidden", type=int, nargs="+", default=[32, 576])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeats} runs, ms")
    print(f"{'hidden':>6} {'entries':>8} {'stack':>9} " + " ".join(f"{m:>13}" for m in MODES))
    for d in args.hidden:
        torch.manual_seed(0)
        geometry = KeyGeometry(KeyProjector(ProjectorConfig(hidden_size=d, layer=3)), torch.zeros(d), torch.zeros(d))
        query = QueryKeys(torch.randn(1, d), torch.randn(1, d), torch.randn(1, d), ("game 1",))
        for n in args.sizes:
            bank = synthetic_bank(n, d)
            start = time.perf_counter()
            bank.stacked()
            stack_ms = (time.perf_counter() - start) * 1e3
            cells = []
            for mode in MODES:
                ms = timed(lambda: retrieve(mode, query, bank, geometry, threshold=0.1), args.repeats) * 1e3
                cells.append(f"{ms:13.2f}")
            print(f"{d:>6} {n:>8} {stack_ms:9.1f} " + " ".join(cells), flush=True)


if __name__ == "__main__":
    main()
