"""Peak memory of the worst case of each request kind (issue 31): the longest allowed question with a 32-token
continuation, the longest allowed statement, a 1,000-row write, importing a 10,000-entry file, re-keying it
(a token_match question on the imported memory). Each kind runs in a fresh subprocess: the model is loaded,
the peak RSS is reset (/proc/self/clear_refs; sampled with psutil where that is not allowed), the request runs,
and the rise of the peak above the loaded model is printed.

    FASTMEM_CACHE=/root/.cache/fastmem python scripts/request_peaks.py [--kinds question,rows] [--bound-mib 1024]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fastmem.errors import FastmemError  # noqa: E402

KINDS = ("question", "statement", "rows", "import", "rekey")
FILE = Path(os.environ.get("TMPDIR", "/tmp")) / "fastmem_peaks_10k.safetensors"


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def hwm_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


class Peak:
    """The highest RSS while the block runs: the kernel's own peak after a reset, else 2 ms samples."""

    def __enter__(self):
        self.base = rss_mib()
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.sampled = None
        except OSError:
            self.sampled, self.stop = [self.base], False
            threading.Thread(target=self._sample, daemon=True).start()
        self.start = time.perf_counter()
        return self

    def _sample(self):
        while not self.stop:
            self.sampled.append(rss_mib())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        if self.sampled is None:
            self.peak = hwm_mib()
        else:
            self.stop = True
            self.peak = max(self.sampled)
        self.rise = self.peak - self.base


def longest(lm, make, limit: int) -> tuple[str, int]:
    """The longest text `make(n)` (text, prompt) whose prompt stays within `limit` tokens (binary search on n),
    and its tokens."""
    lo, hi = 1, 4000
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            text, prompt = make(mid)
            ok = lm.token_count(prompt) <= limit
        except FastmemError:  # over the 2,000 characters allowed
            ok = False
        lo, hi = (mid, hi) if ok else (lo, mid - 1)
    text, prompt = make(lo)
    return text, lm.token_count(prompt)


def ten_thousand(lab):
    """A 10,000-entry memory as a file (values random, statements of the default form, labels real)."""
    from fastmem.memory.bank import MemoryBank, MemoryEntry

    empty, g = lab.new_memory(), torch.Generator().manual_seed(0)
    ids = lab._label_ids("red")
    entries = []
    for i in range(10_000):
        context, word = f"game {i % 97}", f"w{i}x"
        text = f"In {context}, {word} means"
        entries.append(MemoryEntry(word, context, "red", ids[0], text, (len(context) + 5, len(context) + 5 + len(word)),
                                   (3, 3 + len(context)), torch.randn(empty.hidden_size, generator=g) * 0.1,
                                   tuple(ids[1:])))
    bank = MemoryBank(empty.model_name, empty.hidden_size, empty.key_layer, empty.context_layer,
                      empty.symbol_layer, empty.value_steps, entries, empty.token_layer)
    return lab.export_memory(bank)


def run_kind(kind: str) -> dict:
    from fastmem.fields import MAX_TEXT_TOKENS
    from fastmem.lab import Lab
    from fastmem.memory.prompts import statement_prompt

    lab = Lab.load("smollm2", device="cpu")
    bank = lab.new_memory()
    lab.write(bank, [("blicket", "game A", "red"), ("dax", "game B", "blue")])
    glyphs = "\U00013000"
    if kind == "question":
        text, size = longest(lab.lm, lambda n: ((q := f"In game A, what is {glyphs * n} dax?"), lab.parse_question(q)),
                             MAX_TEXT_TOKENS)
        request = lambda: lab.ask(bank, text, max_new_tokens=32)  # noqa: E731
    elif kind == "statement":
        make = lambda n: ((s := f"In game A, {glyphs * n} wug means red"), statement_prompt(s, "wug", "game A", "red"))  # noqa: E731
        text, size = longest(lab.lm, make, MAX_TEXT_TOKENS)
        request = lambda: lab.write_statement(bank, text, "wug", "game A", "red")  # noqa: E731
    elif kind == "rows":
        rows = [(f"w{i}x", f"game {i % 97}", "red") for i in range(1000)]
        request, size = (lambda: lab.write(bank, rows)), 1000
    else:
        if not FILE.exists():
            FILE.write_bytes(ten_thousand(lab))
        data = FILE.read_bytes()
        if kind == "import":
            request, size = (lambda: lab.import_memory(data)), 10_000
        else:
            big = lab.import_memory(data)
            request, size = (lambda: lab.ask(big, "In game 3, what is w3x?", mode="token_match")), 10_000
    import gc

    gc.collect()
    with Peak() as peak:
        got = request()
    statuses = [getattr(r, "status", None) for r in (got if isinstance(got, list) else [got])]
    assert all(s in (None, "added", "replaced") for s in statuses), statuses
    return {"kind": kind, "size": size, "model_mib": round(peak.base), "rise_mib": round(peak.rise),
            "seconds": round(peak.seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--bound-mib", type=int, default=1024, help="the bound every kind must stay under")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_kind(args.one)))
        return
    rows = []
    for kind in args.kinds.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", kind], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
            rows.append({"kind": kind, "size": "-", "model_mib": "-", "rise_mib": "failed", "seconds": "-"})
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr)
    print(f"\n| request | size | RSS with the model (MiB) | peak rise (MiB) | seconds | under {args.bound_mib} MiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ok = isinstance(r["rise_mib"], int) and r["rise_mib"] < args.bound_mib
        print(f"| {r['kind']} | {r['size']} | {r['model_mib']} | {r['rise_mib']} | {r['seconds']} | {'yes' if ok else 'NO'} |")
    print(f"\ntorch {torch.__version__}, {os.cpu_count()} CPUs, threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
