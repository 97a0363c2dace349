"""Markdown tables for the README from the benchmark's and the scale command's JSON output.

    python -m fastmem bench --model smollm2 --json results.json
    python -m fastmem scale --model smollm2 --sizes 100 1000 10000 100000 --json scale.json
    python scripts/readme_tables.py results.json [--scale scale.json]
    python scripts/readme_tables.py baselines-bench.json --compact     # one line per experiment and mode
    python scripts/readme_tables.py typed.json --typed                 # from `python -m fastmem bench --typed`
    python scripts/readme_tables.py --sizes baselines.json            # from `python -m fastmem baselines --json`
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from fastmem.eval.metrics import lower_is_better

SELECTIVITY = ("wrong_context", "sibling", "swapped", "lookalike", "kept")


def _cell(r: dict, intervals: bool) -> str:
    if not r["n"]:
        return "–"
    text = f"{r['rate']:.3f}"
    if intervals:
        text += f" [{r['ci_low']:.2f},{r['ci_high']:.2f}]"
    if r.get("post") is not None:
        text += f" ({r['post']:.3f})"
    return text


def _title(metric: str) -> str:
    name = metric.replace("paraphrase:", "para: ").replace("_", " ")
    return name + (" ↓" if lower_is_better(metric) else "")


LENGTH_MARK = " · "  # "same game A/B · 2-token labels": the benchmark's rows per label length


def length_table(rows: list[dict]) -> str:
    """Write, Read and Plain per label length (rows of a suite whose labels differ in length)."""
    split = [r for r in rows if LENGTH_MARK in r["experiment"]]
    if not split:
        return ""
    out = ["**By label length (tokens)**\n", "| experiment | mode | label tokens | write | read | plain ↓ |",
           "|---|---|---|---|---|---|"]
    for key in dict.fromkeys((r["experiment"], r["mode"]) for r in split):
        got = {r["metric"]: r for r in split if (r["experiment"], r["mode"]) == key}
        exp, length = key[0].split(LENGTH_MARK)
        out.append(f"| {exp} | {key[1]} | {length.split('-')[0]} | "
                   + " | ".join(_cell(got[m], True) if m in got else "–" for m in ("write", "read", "plain")) + " |")
    return "\n".join(out) + "\n"


def bench_tables(rows: list[dict], modes: list[str] | None = None) -> str:
    lengths = length_table(rows)
    rows = [r for r in rows if LENGTH_MARK not in r["experiment"] and not r.get("form")]
    experiments = list(dict.fromkeys(r["experiment"] for r in rows))
    modes = modes or list(dict.fromkeys(r["mode"] for r in rows))
    paraphrases = sorted({r["metric"] for r in rows if r["metric"].startswith("paraphrase:")})
    tables = [("The post's metrics", ["write", "read", "plain", "unrelated", "unchanged"]),
              ("Selectivity and paraphrases", list(SELECTIVITY) + paraphrases)]
    out = []
    for title, metrics in tables:
        out.append(f"**{title}**\n")
        out.append("| experiment | mode | " + " | ".join(_title(m) for m in metrics) + " | point: α / thr |")
        out.append("|---|---|" + "---|" * (len(metrics) + 1))
        for exp in experiments:
            for mode in modes:
                got = {r["metric"]: r for r in rows if r["experiment"] == exp and r["mode"] == mode}
                if not got:
                    continue
                first = next(iter(got.values()))
                thr = "off" if first["threshold"] is None else f"{first['threshold']:.2f}"
                cells = [_cell(got[m], m in ("read", "wrong_context", "sibling", "swapped", "lookalike")
                               or m.startswith("paraphrase:")) if m in got else "–" for m in metrics]
                point = first.get("operating_point") or "–"
                out.append(f"| {exp} | {mode} | " + " | ".join(cells) + f" | {point}: {first['alpha']:g} / {thr} |")
        out.append("")
    return "\n".join(out) + ("\n" + lengths if lengths else "")


def typed_table(rows: list[dict], modes: list[str] | None = None) -> str:
    """Questions typed as people type them: per form (rows with a `form`), Read per mode, and the negatives pooled
    over the forms. One line per form; the experiments pooled (hits and n summed)."""
    typed = [r for r in rows if r.get("form")]
    if not typed:
        return ""
    modes = modes or list(dict.fromkeys(r["mode"] for r in typed))
    forms = list(dict.fromkeys(r["form"] for r in typed))

    def pooled(metric, mode, form=None):
        got = [r for r in typed if r["metric"] == metric and r["mode"] == mode and (form is None or r["form"] == form)]
        n = sum(r["n"] for r in got)
        return (sum(r["hits"] for r in got) / n, n) if n else (None, 0)

    out = ["| form | n | " + " | ".join(modes) + " |", "|---|---|" + "---|" * len(modes)]
    for form in forms:
        metric = "read_in_12" if any(r["metric"] == "read_in_12" and r["form"] == form for r in typed) else "read"
        cells = [pooled(metric, m, form) for m in modes]
        n = max(c[1] for c in cells)
        out.append(f"| {form.removeprefix('typed:')}{' (label within 12 tokens)' if metric == 'read_in_12' else ''} "
                   f"| {n} | " + " | ".join("–" if c[0] is None else f"{c[0]:.3f}" for c in cells) + " |")
    out.append("")
    negatives = [m for m in ("plain", "wrong_context", "sibling", "lookalike") if any(r["metric"] == m for r in typed)]
    out.append("| negative, every typed form pooled ↓ | n | " + " | ".join(modes) + " |")
    out.append("|---|---|" + "---|" * len(modes))
    for metric in negatives:
        cells = [pooled(metric, m) for m in modes]
        out.append(f"| {metric} | {max(c[1] for c in cells)} | "
                   + " | ".join("–" if c[0] is None else f"{c[0]:.3f}" for c in cells) + " |")
    return "\n".join(out) + "\n"


def scale_table(data: dict) -> str:
    points, timings = data["points"], data["timings"]
    metrics = list(dict.fromkeys(p["metric"] for p in points))
    out = ["| bindings | " + " | ".join(_title(m) for m in metrics) + " | write s / binding | retrieval ms / question |",
           "|---|" + "---|" * (len(metrics) + 2)]
    for t in timings:
        cells = []
        for m in metrics:
            p = next(p for p in points if p["experiment"] == f"{t['size']:,} bindings" and p["metric"] == m)
            cells.append(f"{p['rate']:.3f} [{p['ci_low']:.2f},{p['ci_high']:.2f}] (n={p['n']})")
        out.append(f"| {t['size']:,} | " + " | ".join(cells)
                   + f" | {t['write_s_per_binding']:.4f} | {t['retrieval_ms']:.2f} |")
    return "\n".join(out)


COMPACT = ("write", "read", "plain", "wrong_context", "lookalike", "unrelated", "kept")


def compact_table(rows: list[dict], modes: list[str] | None = None) -> str:
    """One line per experiment and mode: the main metrics, the paraphrases' mean, and tokens per question."""
    rows = [r for r in rows if LENGTH_MARK not in r["experiment"] and not r.get("form")]
    modes = modes or list(dict.fromkeys(r["mode"] for r in rows))
    out = ["| experiment | mode | " + " | ".join(_title(m) for m in COMPACT[:2]) + " | paraphrases (mean) | "
           + " | ".join(_title(m) for m in COMPACT[2:]) + " | tokens / question |", "|---|---|" + "---|" * 9]
    for exp in dict.fromkeys(r["experiment"] for r in rows):
        for mode in modes:
            got = {r["metric"]: r for r in rows if r["experiment"] == exp and r["mode"] == mode}
            if not got:
                continue
            para = [r for m, r in got.items() if m.startswith("paraphrase:")]
            mean = sum(r["hits"] for r in para) / max(1, sum(r["n"] for r in para))
            tokens = got["read"].get("prompt_tokens")
            out.append(f"| {exp} | {mode} | " + " | ".join(_cell(got[m], True) for m in COMPACT[:2])
                       + f" | {mean:.3f} | " + " | ".join(_cell(got[m], m in ("wrong_context", "lookalike", "kept"))
                                                          for m in COMPACT[2:])
                       + (f" | {tokens:,.0f} |" if tokens is not None else " | – |"))
    return "\n".join(out) + "\n"


def sizes_table(data: dict) -> str:
    """The baselines command's rows and costs: one line per size and mode."""
    metrics = ("read", "wrong_context", "lookalike", "plain", "kept")
    out = ["| bindings | mode | " + " | ".join(_title(m) for m in metrics)
           + " | tokens / question | ms / question | ms, statements cached |", "|---|---|" + "---|" * 8]
    for c in data["costs"]:
        got = {r["metric"]: r for r in data["rows"]
               if r["experiment"] == f"{c['size']:,} bindings" and r["mode"] == c["mode"]}
        cells = [_cell(got[m], True) if m in got else "does not fit" for m in metrics]
        tokens = f"{c['prompt_tokens']:,.0f}" if c["prompt_tokens"] is not None else f"> {c['window']:,}"
        ms = f"{c['ms_per_question']:,.0f}" if c["ms_per_question"] is not None else "–"
        cached = f"{c['ms_cached']:,.0f}" if c.get("ms_cached") is not None else "–"
        out.append(f"| {c['size']:,} | {c['mode']} | " + " | ".join(cells) + f" | {tokens} | {ms} | {cached} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench_json", nargs="?")
    ap.add_argument("--scale", default=None)
    ap.add_argument("--modes", nargs="+", default=None)
    ap.add_argument("--compact", action="store_true", help="one line per experiment and mode")
    ap.add_argument("--typed", action="store_true", help="the typed forms (a `bench --typed` run) only")
    ap.add_argument("--sizes", default=None, help="JSON of `python -m fastmem baselines`")
    args = ap.parse_args()
    if args.bench_json:
        data = json.loads(Path(args.bench_json).read_text())
        if args.typed:
            print(typed_table(data["rows"], args.modes))
        else:
            print(compact_table(data["rows"], args.modes) if args.compact else bench_tables(data["rows"], args.modes))
        if "calibration" in data:
            c = data["calibration"]
            print(f"Calibration: token layer {c.get('token_layer')}, key layer {c['key_layer']}, symbol layer "
                  f"{c['symbol_layer']}, context layer {c['context_layer']}, value steps {c['value_steps']}, "
                  f"seed {c['seed']}.")
        if "timing" in data:
            t = data["timing"]
            print(f"Forward passes {t['forward_passes']}; wall {t['total_s']:.0f} s (forward {t['forward_s']:.0f} s).")
    if args.scale:
        print(scale_table(json.loads(Path(args.scale).read_text())))
    if args.sizes:
        print(sizes_table(json.loads(Path(args.sizes).read_text())))


if __name__ == "__main__":
    main()
