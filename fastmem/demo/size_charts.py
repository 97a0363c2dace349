"""Pure Altair builders for figures over memory sizes (capacity, baselines): rates and costs per size."""
from __future__ import annotations

from dataclasses import asdict, is_dataclass

import altair as alt
import pandas as pd


def rows_frame(rows) -> pd.DataFrame:
    """Benchmark rows (dataclasses or dicts) as a DataFrame."""
    return pd.DataFrame([asdict(r) if is_dataclass(r) else dict(r) for r in rows])


DASHES = {"whole prompt": [1, 0], "statements cached": [6, 3], "measured": [1, 0]}  # line style per cost kind
SIZE_TICKS = [1, 2, 5, 10, 100, 1_000, 10_000, 100_000]
PALETTE = ["#2e9d5b", "#4b61d1", "#e6862e", "#37a3a3", "#c0392b", "#8e44ad", "#7f8c8d", "#d4ac0d", "#1f618d",
           "#a04000", "#5d6d7e"]


def _sized(rows) -> pd.DataFrame:
    from fastmem.eval.report import metric_title

    df = rows_frame(rows)
    if df.empty:
        raise ValueError("no rows to chart")
    if "size" not in df or df["size"].isna().any():
        raise ValueError("size charts need rows of a capacity or baseline run (each row's `size`)")
    df["bindings"] = df["size"].astype(int)
    df["panel"] = [metric_title(m) for m in df["metric"]]
    return df


def _size_axis(sizes) -> alt.X:
    """Bindings on a log scale, ticks only at round sizes (1, 10, 100, …) inside the data's range."""
    lo, hi = min(sizes), max(sizes)
    ticks = [t for t in SIZE_TICKS if lo <= t <= hi] or [lo, hi]
    return alt.X("bindings:Q", scale=alt.Scale(type="log"), title="bindings in memory (log)",
                 axis=alt.Axis(values=ticks, format="~s"))


def _mode_colors(modes) -> alt.Scale:
    """One colour per mode, the same in every panel of a chart."""
    modes = list(modes)
    return alt.Scale(domain=modes, range=[PALETTE[i % len(PALETTE)] for i in range(len(modes))])


def rates_by_size(rows, title: str, colors: alt.Scale | None = None, columns: int | None = None) -> alt.Chart:
    """Rows of `N bindings` experiments (scale, baselines): one panel per metric, rate against the number
    of bindings (log scale), one line per mode, 95% intervals as error bars."""
    df = _sized(rows)
    modes, panels = list(dict.fromkeys(df["mode"])), list(dict.fromkeys(df["panel"]))
    base = alt.Chart().encode(x=_size_axis(df["bindings"]), color=alt.Color(
        "mode:N", scale=colors or _mode_colors(modes), legend=alt.Legend(orient="bottom", title="mode")))
    lines = base.mark_line(point=True).encode(
        y=alt.Y("rate:Q", scale=alt.Scale(domain=[0, 1]), title="rate"),
        tooltip=["mode", "metric", "bindings", "n", "hits", alt.Tooltip("rate:Q", format=".3f"),
                 alt.Tooltip("ci_low:Q", format=".3f"), alt.Tooltip("ci_high:Q", format=".3f")])
    errors = base.mark_errorbar(ticks=True).encode(y=alt.Y("ci_low:Q", title="rate"), y2="ci_high:Q")
    return alt.layer(lines, errors, data=df).properties(width=170, height=150).facet(
        facet=alt.Facet("panel:N", sort=panels, title=None, header=alt.Header(labelFontSize=12, labelLimit=220)),
        columns=columns or len(panels), title=title)


def costs_by_size(frame: pd.DataFrame, title: str | list[str], y_title: str, colors: alt.Scale | None = None,
                  kinds: list[str] | None = None) -> alt.Chart:
    """Cost against the number of bindings, both on log scales: columns `bindings`, `series` (colour), `kind`
    (dash; `kinds` names every kind of the whole chart, so that concatenated panels share one legend) and `value`."""
    series = list(dict.fromkeys(frame["series"]))
    kinds = kinds or list(dict.fromkeys(frame["kind"]))
    return alt.Chart(frame).mark_line(point=True).encode(
        x=_size_axis(frame["bindings"]),
        y=alt.Y("value:Q", scale=alt.Scale(type="log"), title=y_title),
        color=alt.Color("series:N", scale=colors or _mode_colors(series), title=None,
                        legend=alt.Legend(orient="bottom", labelLimit=320)),
        strokeDash=alt.StrokeDash("kind:N", scale=alt.Scale(domain=kinds, range=[DASHES[k] for k in kinds]),
                                  legend=None),  # the title says which kind is dashed
        tooltip=["series", "kind", "bindings", alt.Tooltip("value:Q", format=",.2f")],
    ).properties(width=420, height=200, title=title)


def baselines_chart(rows, costs, columns: int | None = None) -> alt.Chart:
    """`baselines.run_baselines` results: every metric against the number of bindings per mode, then the
    milliseconds and prompt tokens of one question (modes with equal costs draw on top of each other).
    `columns`: metric panels per line (default: all on one), and the two cost charts stacked when set (a
    narrow page)."""
    costs = [asdict(c) if is_dataclass(c) else dict(c) for c in costs]
    colors = _mode_colors(dict.fromkeys([r.mode if is_dataclass(r) else r["mode"] for r in rows]
                                        + [c["mode"] for c in costs]))
    ms = pd.DataFrame([{"bindings": c["size"], "series": c["mode"], "kind": "whole prompt",
                        "value": c["ms_per_question"]} for c in costs if c["ms_per_question"] is not None]
                      + [{"bindings": c["size"], "series": c["mode"], "kind": "statements cached",
                          "value": c["ms_cached"]} for c in costs if c.get("ms_cached") is not None])
    tokens = pd.DataFrame([{"bindings": c["size"], "series": c["mode"], "kind": "whole prompt",
                            "value": c["prompt_tokens"]} for c in costs if c["prompt_tokens"] is not None])
    kinds = ["whole prompt", "statements cached"]
    parts = (costs_by_size(ms, ["Time per question (batch 1, median; equal costs overlap)",
                                "dashed: in_context_all with its statements' KV cache reused"],
                           "ms per question (log)", colors, kinds),
             costs_by_size(tokens, ["Prompt length", "token_match and codebook: the question alone"],
                           "tokens per question (log)", colors, kinds))
    rates = rates_by_size(rows, "Memory vs baselines as bindings grow (↓ lower is better)", colors, columns)
    return alt.vconcat(rates, *parts) if columns else alt.vconcat(rates, alt.hconcat(*parts))


def capacity_chart(points, timings, columns: int | None = None) -> alt.Chart:
    """`scale.run_scale` results: every metric against the memory's size, then retrieval and write time."""
    timings = [asdict(t) if is_dataclass(t) else dict(t) for t in timings]
    cost = pd.DataFrame([{"bindings": t["size"], "series": "retrieval, ms per question", "kind": "measured",
                          "value": t["retrieval_ms"]} for t in timings]
                        + [{"bindings": t["size"], "series": "write, ms per binding", "kind": "measured",
                            "value": 1000 * t["write_s_per_binding"]} for t in timings])
    return alt.vconcat(rates_by_size(points, "One memory as it grows (↓ lower is better)", columns=columns),
                       costs_by_size(cost, "Time (write: forward pass and value refinement included)",
                                     "milliseconds (log)")).resolve_scale(color="independent")


