"""Chart builders are pure: data in, valid Vega-Lite out, no Streamlit."""
import math

import altair as alt
import pytest

from fastmem.demo import charts
from fastmem.eval.scoring import Row


def _row(exp, mode, metric, rate, post=None, size=None):
    return Row("m", exp, mode, metric, 10, int(rate * 10), rate, max(0, rate - .2), min(1, rate + .2), 0, 1, 1, 1,
               4, 1.0, None, post, size=size)


def test_the_library_never_imports_streamlit():
    from pathlib import Path

    package = Path(charts.__file__).resolve().parents[1]
    sources = {p: p.read_text() for p in package.rglob("*.py")}
    assert len(sources) > 30
    assert not [p for p, text in sources.items() if "import streamlit" in text or "from streamlit" in text]


def _values(spec):
    return spec["datasets"][next(iter(spec["datasets"]))]


def _layers(spec):
    return [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"] for layer in spec["layer"]]


def _band_axes(spec):
    """Every y/x axis spec of a nominal field in a (layered) chart."""
    out = []
    for layer in spec.get("layer", [spec]):
        for ch in ("x", "y"):
            enc = layer.get("encoding", {}).get(ch)
            if enc and enc.get("type") == "nominal":
                out.append(enc.get("axis", {}))
    return out


def test_score_bars_marks_chosen_runner_up_gated_and_threshold():
    c = charts.score_bars(["a", "b", "c"], [0.2, 0.9, -math.inf], chosen=1, threshold=0.5)
    spec = c.to_dict()
    status = {v["index"]: v["status"] for v in _values(spec)}
    assert status == {0: "runner-up", 1: "chosen", 2: "gated"}
    assert [v["index"] for v in sorted(_values(spec), key=lambda v: v["rank"])] == [1, 0, 2]  # best first
    bar_y = spec["layer"][0]["encoding"]["y"]
    assert bar_y["sort"] == ["b", "a", "c"]  # an explicit order (a sort by field is lost in layers); no "#2"
    assert "rule" in _layers(spec)  # the threshold line
    rule = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "rule")
    assert rule["encoding"]["x"]["field"] == "threshold"
    assert "margin top-1 − runner-up 0.700" in spec["title"]["subtitle"][0]
    assert "3 of 3 entries shown" in spec["title"]["subtitle"][0]
    assert all(axis["labelOverlap"] is False for axis in _band_axes(spec))
    assert spec["height"] == {"step": charts.BAR_STEP}  # every bar gets room for its label


def test_score_bars_two_entries_have_room_for_both_labels():
    spec = charts.score_bars(["wug · game A → green", "wug · game B → blue"], [0.8, 0.3], chosen=0).to_dict()
    assert len(_values(spec)) == 2 and spec["height"]["step"] >= 20
    assert "rule" not in _layers(spec)
    assert [v["status"] for v in _values(spec)] == ["chosen", "runner-up"]


def test_score_bars_ten_thousand_entries_draws_top_k_only():
    import random

    rng = random.Random(0)
    scores = [rng.uniform(-1, 0.5) for _ in range(10_000)]
    scores[7777] = 0.99
    scores[123] = 0.95
    spec = charts.score_bars([f"e{i}" for i in range(10_000)], scores, chosen=7777, threshold=0.5, k=10).to_dict()
    values = _values(spec)
    assert len(values) == 10
    assert values[0]["index"] == 7777 and values[0]["status"] == "chosen"
    assert values[1]["index"] == 123 and values[1]["status"] == "runner-up"
    assert sorted(v["score"] for v in values)[0] >= sorted(scores)[-10]
    assert "10 of 10000 entries shown" in spec["title"]["subtitle"][0]


def test_score_bars_nothing_chosen_marks_the_best_as_not_injected():
    spec = charts.score_bars(["a", "b"], [0.31, 0.1], chosen=-1, threshold=0.5).to_dict()
    assert [v["status"] for v in _values(spec)] == ["top-1, not injected", "runner-up"]


def test_score_bars_chosen_kept_even_outside_top_k_and_switched_off_marked():
    spec = charts.score_bars(["a", "b", "c"], [0.9, 0.8, 0.1], chosen=2, k=2, disabled={0}).to_dict()
    assert {v["index"]: v["status"] for v in _values(spec)} == {0: "switched off", 2: "chosen"}


def test_score_bars_rejects_mismatched_inputs():
    with pytest.raises(ValueError):
        charts.score_bars(["a"], [0.1, 0.2])
    with pytest.raises(ValueError):
        charts.score_bars([], [])


def test_heatmap_cells_labels_and_top_entries():
    c = charts.score_heatmap(["q1", "q2"], ["e1", "e2", "e3"], [[0.1, 0.2, 0.3], [0.4, float("-inf"), 0.6]])
    spec = c.to_dict()
    values = _values(spec)
    assert len(values) == 6
    assert [v["text"] for v in values if v["question"] == "q2"][1] == "gated"
    assert all(axis["labelOverlap"] is False for axis in _band_axes(spec))
    assert sorted({v["entry"] for v in values}) == ["e1", "e2", "e3"]  # the entries' own labels, no "#0"
    many = [[(i * 37 % 101) / 100 for i in range(5000)], [(i * 53 % 97) / 100 for i in range(5000)]]
    spec = charts.score_heatmap(["q1", "q2"], [f"e{i}" for i in range(5000)], many, k=4).to_dict()
    assert len(_values(spec)) <= 2 * 8
    assert "of 5000 entries shown" in spec["title"]["subtitle"][0]


def test_token_bars_every_label_and_visible_space():
    tokens = [(" red", 3.0), ("\n", 1.0)] + [(f" t{i}", 0.5 - i / 10) for i in range(6)] + [(" red", 0.0)]
    spec = charts.token_bars(tokens, "t").to_dict()
    values = _values(spec)
    assert [v["token"] for v in values][:2] == ["␣red", "↵"]
    assert len({v["token"] for v in values}) == len(tokens)  # equal strings are not merged into one bar
    axes = _band_axes(spec)
    assert axes and all(axis["labelOverlap"] is False and axis["labelLimit"] >= 200 for axis in axes)
    assert spec["layer"][0]["encoding"]["y"]["field"] == "token"  # horizontal bars: tokens on the y axis
    assert spec["layer"][0]["encoding"]["y"]["sort"] == [v["token"] for v in values]  # highest score on top
    assert spec["height"] == {"step": charts.BAR_STEP}


def test_before_and_after_token_charts_share_one_labelled_scale():
    before, after = [(" a", 12.0), (" b", 3.0)], [(" red", 70.0), (" a", 10.0)]
    domain = charts.shared_domain(before, after)
    assert domain[0] == 0.0 and domain[1] > 70.0  # room for the value label past the longest bar
    specs = [charts.token_bars(t, title, domain=domain).to_dict() for t, title in ((before, "before"),
                                                                                  (after, "after"))]
    for spec in specs:
        x = spec["layer"][0]["encoding"]["x"]
        assert x["title"] == "logit" and x["scale"]["domain"] == list(domain)
    promoted = charts.token_bars(after, "promotes", x_title="logit added (α · W_U v)").to_dict()
    assert promoted["layer"][0]["encoding"]["x"]["title"] == "logit added (α · W_U v)"


def test_bench_chart_and_table():
    rows = [_row("same game A/B", m, met, r, post=.8 if met == "read" else None)
            for m in ("none", "dual_key") for met, r in (("write", 1.0), ("read", .5), ("plain", 0.0))]
    spec = charts.bench_chart(rows).to_dict()
    assert spec["facet"]["field"] == "panel" and spec["columns"] == 5  # panels wrap, 5 to a line
    assert spec["facet"]["sort"] == ["write", "read", "plain ↓"]  # lower-is-better marked
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]
             for layer in spec["spec"]["layer"]]
    assert marks == ["bar", "errorbar", "tick"]
    x_axis = spec["spec"]["layer"][0]["encoding"]["x"]["axis"]
    assert x_axis["labelOverlap"] is False  # every mode is labelled
    table = charts.bench_table(rows)
    assert list(table.columns)[-1] == "post's figure"
    assert table["95% CI"].iloc[0] == "[0.80, 1.00]"
    assert table["post's figure"].isna().sum() == 4


def test_bench_chart_one_block_per_experiment():
    rows = [_row(exp, m, met, .5) for exp in ("A", "B") for m in ("none", "token_match")
            for met in ("write", "read", "paraphrase:x", "paraphrase:y", "kept", "lookalike")]
    spec = charts.bench_chart(rows, columns=3).to_dict()
    assert [block["title"] for block in spec["vconcat"]] == ["A", "B"]
    assert all(block["columns"] == 3 and len(block["facet"]["sort"]) == 6 for block in spec["vconcat"])


def test_bench_chart_empty_raises():
    with pytest.raises(ValueError):
        charts.bench_chart([])
    assert charts.bench_table([]).empty


def test_failure_chart():
    c = charts.failure_chart([{"binding": "x · game A", "margin": -0.1, "retrieved": "y"}])
    assert isinstance(c, alt.Chart)
    c.to_dict()


def test_baselines_chart_rates_and_costs_against_bindings_on_log_scales():
    from fastmem.eval.baselines import Cost

    rows = [_row(f"{n:,} bindings", m, met, .5, size=n) for n in (2, 10, 1000) for m in ("token_match", "in_context_all")
            for met in ("read", "wrong_context", "kept")]
    costs = [Cost(n, "token_match", True, 20, 30.0) for n in (2, 10, 1000)] + [
        Cost(2, "in_context_all", True, 60, 80.0, 40.0), Cost(10, "in_context_all", True, 150, 200.0, 45.0),
        Cost(1000, "in_context_all", False, None, None, None, 8192)]
    spec = charts.baselines_chart(rows, costs).to_dict()
    rates, cost = spec["vconcat"]
    assert rates["facet"]["sort"] == ["read", "wrong_context ↓", "kept"]
    x = rates["spec"]["layer"][0]["encoding"]["x"]
    assert x["scale"]["type"] == "log" and x["title"] == "bindings in memory (log)"
    ms, tokens = cost["hconcat"]
    ms_values = spec["datasets"][ms["data"]["name"]]
    assert {(v["series"], v["kind"]) for v in ms_values} == {
        ("token_match", "whole prompt"), ("in_context_all", "whole prompt"), ("in_context_all", "statements cached")}
    assert not [v for v in ms_values if v["bindings"] == 1000 and v["series"] == "in_context_all"]  # did not fit
    assert x["axis"]["values"] == [2, 5, 10, 100, 1000]  # round ticks only, inside the range
    colours = [rates["spec"]["layer"][0]["encoding"]["color"]["scale"], ms["encoding"]["color"]["scale"]]
    assert colours[0] == colours[1]  # a mode has one colour in every panel
    narrow = charts.baselines_chart(rows, costs, columns=3).to_dict()  # the app's page: wrapped and stacked
    assert narrow["vconcat"][0]["columns"] == 3 and len(narrow["vconcat"]) == 3
    assert ms["encoding"]["y"]["title"] == "ms per question (log)" and tokens["encoding"]["y"]["scale"]["type"] == "log"


def test_capacity_chart_from_scale_points_and_timings():
    from fastmem.eval.scale import ScaleTiming

    points = [_row(f"{n:,} bindings", "token_match", met, 1.0, size=n) for n in (100, 10_000) for met in ("read", "lookalike")]
    timings = [ScaleTiming(100, 0.02, 0.2, 0.01), ScaleTiming(10_000, 0.02, 1.8, 0.5)]
    spec = charts.capacity_chart(points, timings).to_dict()
    rates, cost = spec["vconcat"]
    assert rates["facet"]["sort"] == ["read", "lookalike ↓"]
    values = spec["datasets"][cost["data"]["name"]]
    assert {(v["series"], v["bindings"]) for v in values} >= {("retrieval, ms per question", 10_000),
                                                               ("write, ms per binding", 100)}
    assert [v["value"] for v in values if v["series"] == "write, ms per binding"] == [20.0, 20.0]


def test_layer_profile_chart_titles_both_axes_and_draws_the_threshold():
    from fastmem.demo.depth import LayerMatch

    rows = [LayerMatch(e, p, layer, 0.9 - 0.01 * layer) for e in ("blicket · game A → red", "blicket · game B → blue")
            for p in ("word", "context") for layer in range(4)]
    spec = charts.layer_profile_chart(rows, threshold=0.95).to_dict()
    lines, rule = spec["layer"]
    assert lines["encoding"]["x"]["title"] == "layer (0 = token embeddings)"
    assert lines["encoding"]["y"]["title"].startswith("match")
    assert rule["mark"]["type"] == "rule" and "0.95" in spec["title"]["subtitle"]
    assert len(_values(spec)) >= len(rows)
    with pytest.raises(ValueError):
        charts.layer_profile_chart([])
