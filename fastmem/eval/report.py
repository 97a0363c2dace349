"""Benchmark results in the post's layout: one row per (experiment, mode), one column per metric.

Pure functions over benchmark rows (`fastmem.eval.bench.Row` or dicts with the same fields). Metric names are
taken from the rows themselves, in order of first appearance, so new metrics (`wrong_context`,
`paraphrase:<form>`, …) need no change here; lower-is-better metrics come from `fastmem.eval.bench.LOWER_IS_BETTER`.
"""
from __future__ import annotations

from dataclasses import asdict, is_dataclass

import pandas as pd

LOWER_MARK = "↓"
FOOTNOTE = (f"Cell: rate [95% Wilson interval]; (x): the reference post's figure on Pythia-70M. "
            f"{LOWER_MARK}: lower is better.")


def lower_is_better() -> frozenset[str]:
    from fastmem.eval.metrics import LOWER_IS_BETTER

    return frozenset(LOWER_IS_BETTER)


def metric_title(metric: str, lower: frozenset[str] | None = None) -> str:
    """The column title of a metric: its name, marked when lower is better."""
    lower = lower_is_better() if lower is None else lower
    return f"{metric} {LOWER_MARK}" if metric in lower else metric


def _records(rows) -> list[dict]:
    return [asdict(r) if is_dataclass(r) else dict(r) for r in rows]


def _ordered(values) -> list:
    return list(dict.fromkeys(values))


def cell(rec: dict, with_post: bool = True) -> str:
    """'0.867 [0.80, 0.92] (0.805)': rate, 95% interval, the post's figure where it has one."""
    text = f"{rec['rate']:.3f} [{rec['ci_low']:.2f}, {rec['ci_high']:.2f}]"
    post = rec.get("post")
    if with_post and post is not None and post == post:  # NaN-safe
        text += f" ({post:.3f})"
    return text


def _settings(recs: list[dict]) -> tuple[str, str]:
    alpha = _ordered(f"{r['alpha']:g}" for r in recs if r.get("alpha") is not None)
    thr = _ordered("–" if r.get("threshold") is None else f"{r['threshold']:.2f}" for r in recs)
    return "/".join(alpha) or "–", "/".join(thr) or "–"


def _row_key(r: dict) -> tuple:
    return (r["experiment"], r.get("form", ""), r.get("operating_point", ""), r["mode"])


def pivot_frame(rows, with_post: bool = True) -> pd.DataFrame:
    """One row per (experiment, form, operating point, mode) in order of first appearance; one text column per
    metric (marked `↓` when lower is better), then alpha and threshold. The form and point columns appear when
    the rows have more than one. A missing metric is ''."""
    recs = _records(rows)
    lower = lower_is_better()
    metrics = _ordered(r["metric"] for r in recs)
    keys = _ordered(_row_key(r) for r in recs)
    by_key: dict[tuple, dict[str, dict]] = {}
    for r in recs:
        by_key.setdefault(_row_key(r), {}).setdefault(r["metric"], r)
    show_form = len({k[1] for k in keys}) > 1
    show_point = len({k[2] for k in keys}) > 1
    table = []
    for exp, form, point, mode in keys:
        cells = by_key[(exp, form, point, mode)]
        line = {"experiment": exp, "form": form or "(suite's own)", "point": point, "mode": mode}
        for metric in metrics:
            line[metric_title(metric, lower)] = cell(cells[metric], with_post) if metric in cells else ""
        line["α"], line["threshold"] = _settings(list(cells.values()))
        table.append(line)
    columns = (["experiment"] + (["form"] if show_form else []) + (["point"] if show_point else []) + ["mode"]
               + [metric_title(m, lower) for m in metrics] + ["α", "threshold"])
    return pd.DataFrame(table, columns=columns)


HEADLINE = ("read", "plain", "wrong_context", "lookalike", "kept")


def compact_frame(rows, metrics=HEADLINE) -> pd.DataFrame:
    """The headline metrics only, one number each (the rate), one row per (experiment, mode): a table that fits
    a screen. The full table (`pivot_frame`) has the intervals and every metric."""
    recs = [r for r in _records(rows) if r["metric"] in metrics and not r.get("form")]
    lower = lower_is_better()
    table = {}
    for r in recs:
        line = table.setdefault((r["experiment"], r["mode"]), {"experiment": r["experiment"], "mode": r["mode"]})
        line[metric_title(r["metric"], lower)] = round(r["rate"], 3)
    columns = ["experiment", "mode"] + [metric_title(m, lower) for m in metrics]
    return pd.DataFrame(list(table.values()), columns=columns)


def format_table(rows, with_post: bool = True, gap: int = 2) -> str:
    """The pivot as plain text: every column as wide as its widest cell (header included) plus `gap`
    spaces, so cells never run together; a footnote explains the cells and the marks."""
    frame = pivot_frame(rows, with_post)
    if frame.empty:
        return "(no results)"
    columns = list(frame.columns)
    cells = [[str(v) for v in line] for line in frame.itertuples(index=False, name=None)]
    widths = [max(len(c), *(len(line[j]) for line in cells)) for j, c in enumerate(columns)]
    sep = " " * max(1, gap)

    def fmt(values):
        return sep.join(v.ljust(w) for v, w in zip(values, widths)).rstrip()

    lines = [fmt(columns), fmt(["-" * w for w in widths])] + [fmt(line) for line in cells]
    return "\n".join(lines + ["", FOOTNOTE])


__all__ = ["pivot_frame", "format_table", "metric_title", "lower_is_better", "cell", "FOOTNOTE"]


def seed_spread(rows) -> pd.DataFrame:
    """Mean, min and max of each (experiment, mode, metric) rate over the seeds in `rows` (benchmark rows of
    several runs, told apart by their `seed`), with the number of seeds and the rows' total n."""
    frame = pd.DataFrame(_records(rows))
    keys = ["experiment", "mode", "metric"]
    order = frame[keys].drop_duplicates()
    spread = frame.groupby(keys, sort=False).agg(mean=("rate", "mean"), low=("rate", "min"), high=("rate", "max"),
                                                 seeds=("seed", "nunique"), n=("n", "sum")).reset_index()
    return order.merge(spread, on=keys, how="left")
