"""Retrieval latency for memories of 1, 1,000 and 100,000 synthetic entries.

Entries are random vectors (retrieval cost does not depend on what the vectors mean), at the tiny test
model's hidden size (32) and at SmolLM2-135M's (576). For token_match every entry has 3 word tokens and one of two
contexts of 2 tokens (like `In game A, blicket means`); the question is one written word with a little noise.
`token_match exact` switches the shortlist off (fastmem.memory.retrieval.PRUNE_ABOVE) to show what it saves. Timed: one question against the whole memory,
scoring + top-1 + value pick (fastmem.memory.retrieval.retrieve), per mode, after the memory's stacked tensors
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

from fastmem.memory.bank import MemoryBank, MemoryEntry
from fastmem.memory.projector import KeyProjector, ProjectorConfig
import fastmem.memory.retrieval as retrieval
from fastmem.memory.retrieval import KeyGeometry, QueryKeys, retrieve

MODES = ("raw_both_top1", "dual_key", "both_top1", "context_gate", "average", "token_match", "token_match exact")


def synthetic_bank(n: int, d: int, seed: int = 0) -> MemoryBank:
    g = torch.Generator().manual_seed(seed)
    t = {f: torch.randn(n, d, generator=g) for f in ("key", "context_key", "symbol_key", "value")}
    vocab, contexts = torch.randn(4000, d, generator=g), [torch.randn(2, d, generator=g) for _ in range(2)]
    words = vocab[torch.randint(0, 4000, (n, 3), generator=g)]
    return MemoryBank("synthetic", d, 3, 1, 1, 8, [
        MemoryEntry(f"w{i}", f"game {i % 2}", "red", 5, "In game A, w means", (11, 12), (3, 9), t["value"][i],
                    key=t["key"][i], context_key=t["context_key"][i], symbol_key=t["symbol_key"][i],
                    word_tokens=words[i], context_tokens=contexts[i % 2]) for i in range(n)], token_layer=1)


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
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 1000, 10_000, 100_000])
    ap.add_argument("--hidden", type=int, nargs="+", default=[32, 576])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeats} runs, ms")
    print(f"{'hidden':>6} {'entries':>8} {'stack':>9} " + " ".join(f"{m:>13}" for m in MODES))
    for d in args.hidden:
        torch.manual_seed(0)
        geometry = KeyGeometry(KeyProjector(ProjectorConfig(hidden_size=d, layer=3)), torch.zeros(d), torch.zeros(d),
                               torch.zeros(d), torch.ones(d))
        for n in args.sizes:
            bank = synthetic_bank(n, d)
            asked = bank.entries[n // 2]
            query = QueryKeys(torch.randn(1, d), torch.randn(1, d), torch.randn(1, d), ("game 1",),
                              ((asked.word_tokens + 0.05 * torch.randn(3, d)).unsqueeze(0), torch.ones(1, 3, dtype=bool)),
                              (asked.context_tokens.unsqueeze(0), torch.ones(1, 2, dtype=bool)))
            start = time.perf_counter()
            bank.stacked()
            stack_ms = (time.perf_counter() - start) * 1e3
            cells = []
            for mode in MODES:
                exact, mode = mode.endswith(" exact"), mode.split()[0]
                saved, retrieval.PRUNE_ABOVE = retrieval.PRUNE_ABOVE, (10 ** 9 if exact else retrieval.PRUNE_ABOVE)
                if exact:
                    bank._stacked = None  # a fresh entry cache: the exact path builds no shortlist
                ms = timed(lambda: retrieve(mode, query, bank, geometry, threshold=0.1), args.repeats) * 1e3
                retrieval.PRUNE_ABOVE = saved
                cells.append(f"{ms:13.2f}")
            print(f"{d:>6} {n:>8} {stack_ms:9.1f} " + " ".join(cells), flush=True)


if __name__ == "__main__":
    main()
