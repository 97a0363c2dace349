"""Latency of one question (`Lab.ask`) on a real model: without generation, and with greedy generation.

Writes the test words of the built-in suite (two contexts each) into one memory, then asks each word's
question in turn. Three timings per question:
  answer    ask(max_new_tokens=0): one forward pass, retrieval, correction, the answer token;
  batched   ask(max_new_tokens=N): plus both continuations (without and with memory) decoded as one batch;
  separate  the same answer, then the two continuations decoded one after the other (the old way).
Prints min / p50 / p95 per timing in ms, and how many answers were right. It first times a fixed CPU
workload (20 float32 matmuls) to show how steady the machine is: on a shared or throttled virtual machine
the median is far above the minimum, and so are the figures below.

    python scripts/bench_ask.py [--model smollm2] [--questions 24] [--tokens 4] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fastmem.lab import Lab


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def cpu_check(repeats: int = 40) -> tuple[float, float]:
    """(min, median) seconds of a fixed workload: the machine's steadiness, independent of fastmem."""
    x, w = torch.randn(64, 1024), torch.randn(1024, 4096)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(20):
            x @ w
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--mode", default="token_match")
    ap.add_argument("--questions", type=int, default=24)
    ap.add_argument("--tokens", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fastest, typical = cpu_check()
    print(f"cpu check (20 matmuls 64x1024x4096): min {fastest * 1e3:.0f} ms, median {typical * 1e3:.0f} ms")
    lab = Lab.load(args.model)
    experiment = lab.suite.experiments[0]
    words = lab.suite.split("test")[: max(1, args.questions // 2)]
    rows = [(w.word, ctx, w.labels[i]) for w in words for i, ctx in enumerate(experiment.contexts)]
    bank = lab.new_memory()
    lab.write(bank, rows)
    questions = [(lab.question(word, ctx), label) for word, ctx, label in rows][: args.questions]
    lab.ask(bank, questions[0][0], mode=args.mode, max_new_tokens=args.tokens)  # warm-up

    times: dict[str, list[float]] = {"answer": [], "batched": [], "separate": []}
    right = 0
    for q, label in questions:
        start = time.perf_counter()
        r = lab.ask(bank, q, mode=args.mode)
        times["answer"].append(time.perf_counter() - start)
        right += r.answer.strip() == label
        start = time.perf_counter()
        lab.ask(bank, q, mode=args.mode, max_new_tokens=args.tokens)
        times["batched"].append(time.perf_counter() - start)
        start = time.perf_counter()
        r = lab.ask(bank, q, mode=args.mode)
        for first in (r.base_logits, r.logits):  # one continuation after the other, each with its own prefill
            lab.lm.generate(q.text, first, args.tokens)
        times["separate"].append(time.perf_counter() - start)

    print(f"model {lab.lm.name}, mode {args.mode}, {len(bank)} entries, {len(questions)} questions, "
          f"{args.tokens} generated tokens, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"answers right: {right}/{len(questions)}")
    print(f"{'timing':<10} {'min ms':>8} {'p50 ms':>8} {'p95 ms':>8}")
    for name, values in times.items():
        print(f"{name:<10} {min(values) * 1e3:8.0f} {percentile(values, 50) * 1e3:8.0f} "
              f"{percentile(values, 95) * 1e3:8.0f}")


if __name__ == "__main__":
    main()
