"""Pure Altair chart builders for the app (no Streamlit here): plain data in, alt.Chart out.

Readability rules: every category label is drawn (`labelOverlap=False`, a fixed step per bar), tokens and
entries sit on the y axis of horizontal bars, and only the top-k retrieval entries are drawn, so a chart
reads the same for 2 entries and for 10,000.
"""
from __future__ import annotations

import math
from dataclasses import asdict, is_dataclass

import altair as alt
import pandas as pd

BAR_STEP = 24  # pixels per bar: room for one label line
LABEL_LIMIT = 360  # pixels before a long label is cut with an ellipsis
STATUS_COLORS = {"chosen": "#2e9d5b", "top-1, not injected": "#8e44ad", "runner-up": "#e6a23c", "other": "#9aa5c4",
                 "switched off": "#c8c8c8", "gated": "#e8e8e8"}


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _band_axis(**kw) -> alt.Axis:
    """A category axis that draws every label (no thinning) up to LABEL_LIMIT pixels."""
    return alt.Axis(labelOverlap=False, labelLimit=LABEL_LIMIT, labelFontSize=12, **kw)


def entry_label(word: str, context: str, label: str) -> str:
    return f"{word} · {context} → {label.replace(' ', '␣')}"


def top_k(scores, k: int, chosen: int = -1) -> list[int]:
    """Indices of the k best scores (best first; -inf last), always including `chosen`."""
    vals = [(_finite(s) if _finite(s) is not None else -math.inf) for s in scores]
    order = sorted(range(len(vals)), key=lambda i: (-vals[i], i))[:max(1, k)]
    if 0 <= chosen < len(vals) and chosen not in order:
        order = order[:-1] + [chosen]
    return order


def _unique(labels: list[str]) -> list[str]:
    """Make labels unique (a nominal axis would merge equal ones into one bar)."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def retrieval_summary(scores, chosen: int = -1) -> dict:
    """The best entry, the runner-up and the margin between them (None where there is none)."""
    order = top_k(scores, 2)
    vals = [_finite(scores[i]) for i in order]
    best = order[0] if order and vals and vals[0] is not None else None
    runner = order[1] if len(order) > 1 and vals[1] is not None else None
    margin = vals[0] - vals[1] if best is not None and runner is not None else None
    return {"best": best, "runner_up": runner, "margin": margin, "chosen": chosen if chosen >= 0 else None}


def score_bars(entries: list[str], scores, chosen: int = -1, threshold: float | None = None, k: int = 10,
               disabled=()) -> alt.Chart:
    """The k best-scoring entries for one question as horizontal bars (best on top): the chosen entry, the
    runner-up, the threshold as a red rule line; the title says how many of M entries are shown and the
    margin between the top two. Gated-out entries (-inf) are drawn at 0 and marked 'gated'; `disabled`
    holds the indices of switched-off entries."""
    scores = list(scores)
    m = len(scores)
    if len(entries) != m:
        raise ValueError(f"{len(entries)} entry labels for {m} scores")
    if m == 0:
        raise ValueError("no entries to chart")
    disabled = set(disabled)
    order = top_k(scores, k, chosen)
    summary = retrieval_summary(scores, chosen)
    names = _unique([entries[i] for i in order])  # no "#2": an entry's number would read as its rank
    rows = []
    for rank, (i, name) in enumerate(zip(order, names)):
        v = _finite(scores[i])
        status = ("chosen" if i == chosen else "switched off" if i in disabled else "gated" if v is None
                  else "top-1, not injected" if chosen < 0 and i == summary["best"]
                  else "runner-up" if i == summary["runner_up"] else "other")
        rows.append({"entry": name, "index": i, "score": 0.0 if v is None else v, "status": status, "rank": rank,
                     "text": "gated" if v is None else f"{v:.3f}"})
    data = pd.DataFrame(rows)
    present = [x for x in STATUS_COLORS if x in set(data["status"])]  # the legend lists what is drawn
    y = alt.Y("entry:N", sort=list(names), title=None, axis=_band_axis())  # explicit order: best on top
    bars = alt.Chart(data).mark_bar().encode(
        x=alt.X("score:Q", title="retrieval score"),
        y=y,
        color=alt.Color("status:N", scale=alt.Scale(domain=present, range=[STATUS_COLORS[x] for x in present]),
                        legend=alt.Legend(orient="bottom", title=None)),
        tooltip=["entry", alt.Tooltip("score:Q", format=".3f"), "status"],
    )
    text = alt.Chart(data).mark_text(align="left", dx=4, fontSize=11).encode(x="score:Q", y=y, text="text:N")
    layers = [bars, text]
    if threshold is not None:
        layers.append(alt.Chart(pd.DataFrame({"threshold": [float(threshold)]})).mark_rule(
            color="#c0392b", strokeDash=[4, 3], size=2).encode(x="threshold:Q", tooltip=["threshold:Q"]))
    margin = summary["margin"]
    subtitle = [f"{len(order)} of {m} entries shown (top {len(order)} by score)"
                + (f" · margin top-1 − runner-up {margin:.3f}" if margin is not None else "")
                + (f" · threshold {float(threshold):.2f} (red line)" if threshold is not None else "")]
    return alt.layer(*layers).properties(
        height=alt.Step(BAR_STEP), title=alt.Title("Retrieval: best entries", subtitle=subtitle))


def score_heatmap(questions: list[str], entries: list[str], matrix, k: int = 4, max_entries: int = 12) -> alt.Chart:
    """Scores of several questions (rows) against the entries that matter to them (columns): the union of
    each question's top-k entries, at most `max_entries`, with every label drawn and the value in each cell."""
    if not questions or not entries:
        raise ValueError("no questions or entries to chart")
    keep: list[int] = []
    for row in matrix:
        for i in top_k(row, k):
            if i not in keep:
                keep.append(i)
    keep = sorted(keep[:max_entries])
    names = _unique([f"#{i} {entries[i]}" for i in keep])
    qnames = _unique(list(questions))
    rows = []
    for qi, q in enumerate(qnames):
        for ei, (i, e) in enumerate(zip(keep, names)):
            v = _finite(matrix[qi][i])
            rows.append({"question": q, "entry": e, "score": v, "qi": qi, "ei": ei,
                         "text": "gated" if v is None else f"{v:.2f}"})
    data = pd.DataFrame(rows)
    finite = [r["score"] for r in rows if r["score"] is not None]
    mid = (min(finite) + max(finite)) / 2 if finite else 0.0
    base = alt.Chart(data).encode(
        x=alt.X("entry:N", sort=list(names), title=None,
                axis=alt.Axis(labelOverlap=False, labelLimit=220, labelAngle=-30, labelFontSize=12, orient="top")),
        y=alt.Y("question:N", sort=list(qnames), title=None, axis=_band_axis()),
    )
    rect = base.mark_rect().encode(
        color=alt.Color("score:Q", scale=alt.Scale(scheme="viridis"), title="score"),
        tooltip=["question", "entry", alt.Tooltip("score:Q", format=".3f")])
    text = base.mark_text(fontSize=12).encode(
        text="text:N",
        color=alt.condition(f"datum.score !== null && datum.score > {mid}", alt.value("black"), alt.value("white")))
    m = len(entries)
    return alt.layer(rect, text).properties(
        width=alt.Step(78), height=alt.Step(34),
        title=alt.Title("Retrieval scores: questions × entries",
                        subtitle=[f"{len(keep)} of {m} entries shown (each question's top {k})"]))


def token_bars(tokens: list[tuple[str, float]], title: str, color: str = "#4b61d1", x_title: str = "logit",
               domain: tuple[float, float] | None = None) -> alt.Chart:
    """Top-k tokens with their scores as horizontal bars, every token labelled; leading spaces as '␣'. `domain`:
    one x scale for charts meant to be compared (before and after: `shared_domain`)."""
    labels = _unique([t.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅" for t, _ in tokens])
    data = pd.DataFrame({"token": labels, "score": [float(s) for _, s in tokens], "rank": list(range(len(tokens))),
                         "text": [f"{float(s):.2f}" for _, s in tokens]})
    y = alt.Y("token:N", sort=list(labels), title=None, axis=_band_axis(labelFont="monospace"))
    scale = alt.Scale(domain=list(domain), nice=False) if domain is not None else alt.Undefined
    bars = alt.Chart(data).mark_bar(color=color).encode(
        x=alt.X("score:Q", title=x_title, scale=scale), y=y, tooltip=["token", alt.Tooltip("score:Q", format=".3f")])
    text = alt.Chart(data).mark_text(align="left", dx=3, fontSize=11).encode(x="score:Q", y=y, text="text:N")
    return alt.layer(bars, text).properties(title=title, height=alt.Step(BAR_STEP))


def shared_domain(*token_lists: list[tuple[str, float]]) -> tuple[float, float]:
    """One x range for several token charts (0 included, room for the value labels)."""
    scores = [float(v) for tokens in token_lists for _, v in tokens] or [0.0]
    lo, hi = min(0.0, min(scores)), max(0.0, max(scores))
    pad = 0.15 * ((hi - lo) or 1.0)
    return (lo - pad if lo < 0 else 0.0, hi + pad)


def rows_frame(rows) -> pd.DataFrame:
    """Benchmark rows (dataclasses or dicts) as a DataFrame."""
    return pd.DataFrame([asdict(r) if is_dataclass(r) else dict(r) for r in rows])


def bench_chart(rows, columns: int = 5) -> alt.Chart:
    """Grouped bars, one small panel per metric (wrapped `columns` to a line; lower-is-better marked ↓) and
    one block per experiment, one bar per mode with every mode labelled, the 95% Wilson interval as error
    bars and the reference post's figure as a black tick where it has one."""
    from fastmem.eval.report import metric_title

    df = rows_frame(rows)
    if df.empty:
        raise ValueError("no benchmark rows to chart")
    modes = list(dict.fromkeys(df["mode"]))
    df["panel"] = [metric_title(m) for m in df["metric"]]
    panels = list(dict.fromkeys(df["panel"]))
    base = alt.Chart().encode(x=alt.X("mode:N", sort=modes, title=None,
                                      axis=alt.Axis(labelAngle=-40, labelOverlap=False, labelLimit=120)))
    bars = base.mark_bar().encode(
        y=alt.Y("rate:Q", scale=alt.Scale(domain=[0, 1]), title="rate"),
        color=alt.Color("mode:N", sort=modes, legend=alt.Legend(orient="bottom")),
        tooltip=["experiment", "mode", "metric", "n", "hits", alt.Tooltip("rate:Q", format=".3f"),
                 alt.Tooltip("ci_low:Q", format=".3f"), alt.Tooltip("ci_high:Q", format=".3f"),
                 alt.Tooltip("post:Q", format=".3f", title="post's figure")],
    )
    errors = base.mark_errorbar(ticks=True, color="black").encode(
        y=alt.Y("ci_low:Q", title="rate"), y2="ci_high:Q")
    post = base.transform_filter("isValid(datum.post)").mark_tick(
        color="black", thickness=3, size=18).encode(y="post:Q")
    blocks = []
    for exp in dict.fromkeys(df["experiment"]):
        part = df[df["experiment"] == exp]
        blocks.append(alt.layer(bars, errors, post, data=part).properties(width=30 * len(modes) + 40, height=140)
                      .facet(facet=alt.Facet("panel:N", sort=[p for p in panels if p in set(part["panel"])],
                                             title=None, header=alt.Header(labelFontSize=12, labelLimit=220)),
                             columns=columns, title=str(exp)))
    has_post = "post" in df and df["post"].notna().any()
    title = ("Rate per metric with 95% intervals (" + ("black tick: the post's figure; " if has_post else "")
             + "↓ lower is better)")
    return (blocks[0] if len(blocks) == 1 else alt.vconcat(*blocks)).properties(title=title)


def bench_table(rows) -> pd.DataFrame:
    """One line per (experiment, mode, metric): rate, interval, and the post's figure beside it."""
    df = rows_frame(rows)
    if df.empty:
        return df
    out = df[["experiment", "mode", "metric", "n", "hits", "rate", "ci_low", "ci_high", "post"]].copy()
    out["95% CI"] = [f"[{lo:.2f}, {hi:.2f}]" for lo, hi in zip(out["ci_low"], out["ci_high"])]
    out = out.rename(columns={"post": "post's figure"})
    return out[["experiment", "mode", "metric", "n", "hits", "rate", "95% CI", "post's figure"]]


def failure_chart(failures: list[dict]) -> alt.Chart:
    """Per failed binding: the score margin (correct entry's score minus the retrieved one's)."""
    data = pd.DataFrame(failures)
    return alt.Chart(data).mark_bar(color="#c0392b").encode(
        x=alt.X("margin:Q", title="score margin (correct − retrieved)"),
        y=alt.Y("binding:N", sort="x", title=None),
        tooltip=list(data.columns),
    ).properties(title="Failures: how far the right entry was behind", height=max(60, 20 * len(data)))


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


def layer_profile_chart(matches, threshold: float | None = None) -> alt.Chart:
    """Word and context match of the best entries at every layer (`Lab.layer_profile` records): where the chosen
    entry and its runner-up part. Layer 0 is the token embeddings, which slot-free reading compares."""
    data = pd.DataFrame([asdict(m) if is_dataclass(m) else dict(m) for m in matches])
    if data.empty:
        raise ValueError("no layer matches to chart")
    data["line"] = data["entry"] + " · " + data["part"]
    lines = alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("layer:Q", title="layer (0 = token embeddings)", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("score:Q", title="match (cosine of standardised states)", scale=alt.Scale(domain=[-0.2, 1.05])),
        color=alt.Color("entry:N", legend=alt.Legend(orient="bottom", title=None, labelLimit=LABEL_LIMIT)),
        strokeDash=alt.StrokeDash("part:N", legend=alt.Legend(orient="bottom", title=None)),
        tooltip=["entry", "part", "layer", alt.Tooltip("score:Q", format=".3f")],
    )
    layers = [lines]
    if threshold is not None:
        layers.append(alt.Chart(pd.DataFrame({"threshold": [float(threshold)]})).mark_rule(
            color="#c0392b", strokeDash=[4, 3]).encode(y="threshold:Q"))
    subtitle = "The memory reads layer 0" + (f"; its threshold {float(threshold):.2f} is the red line"
                                             if threshold is not None else "")
    return alt.layer(*layers).properties(height=260, title=alt.Title("Match by depth", subtitle=subtitle))
