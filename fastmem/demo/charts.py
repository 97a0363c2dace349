"""Pure Altair chart builders for the app (no Streamlit here): plain data in, alt.Chart out.

Readability rules: every category label is drawn (`labelOverlap=False`, a fixed step per bar), tokens and
entries sit on the y axis of horizontal bars, and only the top-k retrieval entries are drawn, so a chart
reads the same for 2 entries and for 10,000.
"""
from __future__ import annotations

import math

import altair as alt
import pandas as pd

# the figures over memory sizes live beside; pages reach every chart through this module
from fastmem.demo.size_charts import (baselines_chart, capacity_chart, costs_by_size, rates_by_size,  # noqa: F401
                                     rows_frame)

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
    names = _unique([entries[i] for i in keep])  # no "#i": an entry number reads like a rank
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


def layer_profile_chart(matches, threshold: float | None = None) -> alt.Chart:
    """Word and context match of the best entries at every layer (`Lab.layer_profile` records): where the chosen
    entry and its runner-up part. Layer 0 is the token embeddings, which slot-free reading compares."""
    data = rows_frame(matches)
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
