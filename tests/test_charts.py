"""Chart builders are pure: data in, valid Vega-Lite out, no Streamlit."""
import math

import altair as alt
import pytest

from fastmem import charts
from fastmem.bench import Row


def _row(exp, mode, metric, rate, post=None):
    return Row("m", exp, mode, metric, 10, int(rate * 10), rate, max(0, rate - .2), min(1, rate + .2), 0, 1, 1, 1,
               4, 1.0, None, post)


def test_no_streamlit_import():
    import sys

    assert "streamlit" not in charts.__dict__
    src = open(charts.__file__).read()
    assert "import streamlit" not in src
    assert isinstance(sys.modules["fastmem.charts"], type(charts))


def test_score_bars_marks_chosen_and_gated():
    c = charts.score_bars(["a", "b", "c"], [0.2, 0.9, -math.inf], chosen=1, threshold=0.5)
    spec = c.to_dict()
    values = spec["datasets"][next(iter(spec["datasets"]))]
    status = {v["entry"]: v["status"] for v in values}
    assert status == {"a": "other", "b": "chosen", "c": "gated"}
    assert len(spec["layer"]) == 2


def test_score_bars_no_threshold_single_layer():
    spec = charts.score_bars(["a"], [0.3]).to_dict()
    assert spec["mark"]["type"] == "bar"


def test_heatmap_cells():
    c = charts.score_heatmap(["q1", "q2"], ["e1", "e2", "e3"], [[0.1, 0.2, 0.3], [0.4, float("-inf"), 0.6]])
    spec = c.to_dict()
    values = spec["datasets"][next(iter(spec["datasets"]))]
    assert len(values) == 6
    assert [v["text"] for v in values if v["question"] == "q2"][1] == "gated"


def test_token_bars_visible_space():
    spec = charts.token_bars([(" red", 3.0), ("\n", 1.0)], "t").to_dict()
    values = spec["datasets"][next(iter(spec["datasets"]))]
    assert [v["token"] for v in values] == ["␣red", "↵"]


def test_bench_chart_and_table():
    rows = [_row("same game A/B", m, met, r, post=.8 if met == "read" else None)
            for m in ("none", "dual_key") for met, r in (("write", 1.0), ("read", .5))]
    spec = charts.bench_chart(rows).to_dict()
    assert "facet" in spec and spec["facet"]["column"]["field"] == "metric"
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]
             for layer in spec["spec"]["layer"]]
    assert marks == ["bar", "errorbar", "tick"]
    table = charts.bench_table(rows)
    assert list(table.columns)[-1] == "post's figure"
    assert table["95% CI"].iloc[0] == "[0.80, 1.00]"
    assert table["post's figure"].isna().sum() == 2


def test_bench_chart_empty_raises():
    with pytest.raises(ValueError):
        charts.bench_chart([])
    assert charts.bench_table([]).empty


def test_failure_chart():
    c = charts.failure_chart([{"binding": "x · game A", "margin": -0.1, "retrieved": "y"}])
    assert isinstance(c, alt.Chart)
    c.to_dict()
