"""Pure Altair chart builders for the app (no Streamlit here): plain data in, alt.Chart out."""
from __future__ import annotations

import math
from dataclasses import asdict, is_dataclass

import altair as alt
import pandas as pd


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def entry_label(word: str, context: str, label: str) -> str:
    return f"{word} · {context} → {label.replace(' ', '␣')}"


def score_bars(entries: list[str], scores, chosen: int = -1, threshold: float | None = None) -> alt.Chart:
    """Retrieval score of every memory entry for one question; the chosen entry is highlighted.
    Gated-out entries (-inf) are drawn at 0 and marked 'gated'."""
    data = pd.DataFrame({
        "entry": entries,
        "score": [_finite(s) if _finite(s) is not None else 0.0 for s in scores],
        "status": ["chosen" if i == chosen else ("gated" if _finite(s) is None else "other")
                   for i, s in enumerate(scores)],
        "order": list(range(len(entries))),
    })
    bars = alt.Chart(data).mark_bar().encode(
        x=alt.X("score:Q", title="retrieval score"),
        y=alt.Y("entry:N", sort=alt.EncodingSortField("order"), title=None),
        color=alt.Color("status:N", scale=alt.Scale(domain=["chosen", "other", "gated"],
                                                    range=["#2e9d5b", "#9aa5c4", "#dddddd"]), title=None),
        tooltip=["entry", alt.Tooltip("score:Q", format=".3f"), "status"],
    )
    chart = bars
    if threshold is not None:
        rule = alt.Chart(pd.DataFrame({"threshold": [float(threshold)]})).mark_rule(
            color="#c0392b", strokeDash=[4, 3]).encode(x="threshold:Q", tooltip=["threshold:Q"])
        chart = alt.layer(bars, rule)
    return chart.properties(height=max(60, 24 * len(entries)), title="Retrieval score per entry")


def score_heatmap(questions: list[str], entries: list[str], matrix) -> alt.Chart:
    """Scores of several questions (rows) against every entry (columns)."""
    rows = []
    for qi, q in enumerate(questions):
        for ei, e in enumerate(entries):
            v = _finite(matrix[qi][ei])
            rows.append({"question": q, "entry": e, "score": v, "qi": qi, "ei": ei,
                         "text": "gated" if v is None else f"{v:.2f}"})
    data = pd.DataFrame(rows)
    base = alt.Chart(data).encode(
        x=alt.X("entry:N", sort=alt.EncodingSortField("ei"), title="memory entry"),
        y=alt.Y("question:N", sort=alt.EncodingSortField("qi"), title=None),
    )
    rect = base.mark_rect().encode(
        color=alt.Color("score:Q", scale=alt.Scale(scheme="viridis"), title="score"),
        tooltip=["question", "entry", alt.Tooltip("score:Q", format=".3f")])
    text = base.mark_text(fontSize=11, color="white").encode(text="text:N")
    return alt.layer(rect, text).properties(title="Retrieval scores: questions × entries",
                                            height=max(80, 32 * len(questions)))


def token_bars(tokens: list[tuple[str, float]], title: str, color: str = "#4b61d1") -> alt.Chart:
    """Top-k tokens with their scores; leading spaces shown as '␣'."""
    data = pd.DataFrame({"token": [t.replace(" ", "␣").replace("\n", "↵") or "∅" for t, _ in tokens],
                         "score": [float(s) for _, s in tokens], "rank": list(range(len(tokens)))})
    return alt.Chart(data).mark_bar(color=color).encode(
        x=alt.X("score:Q", title=None),
        y=alt.Y("token:N", sort=alt.EncodingSortField("rank"), title=None),
        tooltip=["token", alt.Tooltip("score:Q", format=".3f")],
    ).properties(title=title, height=max(60, 20 * len(tokens)))


def rows_frame(rows) -> pd.DataFrame:
    """Benchmark rows (dataclasses or dicts) as a DataFrame."""
    return pd.DataFrame([asdict(r) if is_dataclass(r) else dict(r) for r in rows])


def bench_chart(rows) -> alt.Chart:
    """Grouped bars: one panel per metric (columns) and experiment (rows), one bar per mode, with the
    95% Wilson interval as error bars and the reference post's figure as a black tick where it has one."""
    df = rows_frame(rows)
    if df.empty:
        raise ValueError("no benchmark rows to chart")
    modes = list(dict.fromkeys(df["mode"]))
    base = alt.Chart().encode(x=alt.X("mode:N", sort=modes, title=None, axis=alt.Axis(labelAngle=-40)))
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
    metrics = list(dict.fromkeys(df["metric"]))
    return alt.layer(bars, errors, post, data=df).properties(width=110, height=150).facet(
        column=alt.Column("metric:N", sort=metrics, title=None),
        row=alt.Row("experiment:N", title=None),
    ).properties(title="Rate per metric with 95% intervals (black tick: the post's figure)")


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
