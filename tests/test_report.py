"""The post's layout of benchmark results: pivot and plain-text table (pure, no model)."""
import pytest

from fastmem.eval import report
from fastmem.eval.metrics import LOWER_IS_BETTER
from fastmem.eval.scoring import Row


def _row(exp, mode, metric, rate, post=None, alpha=4.0, thr=0.5):
    return Row("m", exp, mode, metric, 128, int(rate * 128), rate, max(0.0, rate - .07), min(1.0, rate + .05), 0,
               20, 2, 2, 8, alpha, thr, post)


METRICS = ["write", "read", "plain", "unrelated", "unchanged", "wrong_context", "paraphrase:reversed order"]


def rows():
    out = []
    for exp in ("same game A/B", "new lab north/south"):
        for mode in ("none", "both_top1", "dual_key"):
            for metric in METRICS:
                out.append(_row(exp, mode, metric, 0.867 if metric == "read" else 1.0,
                                post=0.805 if (metric == "read" and mode == "both_top1") else None,
                                thr=None if mode == "none" else 0.65))
    return out


def test_pivot_one_row_per_experiment_and_mode_one_column_per_metric():
    frame = report.pivot_frame(rows())
    assert list(frame[["experiment", "mode"]].itertuples(index=False, name=None)) == [
        (e, m) for e in ("same game A/B", "new lab north/south") for m in ("none", "both_top1", "dual_key")]
    metric_cols = list(frame.columns)[2:-2]
    assert [c.removesuffix(" ↓") for c in metric_cols] == METRICS  # any metric name, in order of appearance
    for metric in METRICS:
        marked = report.metric_title(metric) != metric
        assert marked == (metric in LOWER_IS_BETTER)
    assert "plain ↓" in frame.columns and "write" in frame.columns
    line = frame[(frame["mode"] == "both_top1") & (frame["experiment"] == "same game A/B")].iloc[0]
    assert line["read"] == "0.867 [0.80, 0.92] (0.805)"
    assert line["write"] == "1.000 [0.93, 1.00]"
    assert line["threshold"] == "0.65" and line["α"] == "4"
    assert frame[frame["mode"] == "none"].iloc[0]["threshold"] == "–"


def test_pivot_missing_cell_is_empty_and_dicts_accepted():
    from dataclasses import asdict

    recs = [asdict(r) for r in rows() if not (r.mode == "dual_key" and r.metric == "write")]
    frame = report.pivot_frame(recs)
    assert frame[frame["mode"] == "dual_key"].iloc[0]["write"] == ""


def test_format_table_columns_never_run_together():
    text = report.format_table(rows())
    lines = text.splitlines()
    header, rule, body = lines[0], lines[1], lines[2:8]
    starts = [i for i, ch in enumerate(rule) if ch == "-" and (i == 0 or rule[i - 1] == " ")]
    assert len(starts) == 2 + len(METRICS) + 2
    for line in [header] + body:
        for s in starts[1:]:
            assert line[s - 2:s] == "  ", (line, s)  # at least two spaces before every column
    assert "0.867 [0.80, 0.92] (0.805)" in text
    assert text.splitlines()[-1] == report.FOOTNOTE


def test_format_table_widths_follow_content():
    long = [_row("a very long experiment name indeed", "dual_key", "read", 0.5, post=0.123)]
    lines = report.format_table(long).splitlines()
    assert lines[0].index("mode") == len("a very long experiment name indeed") + 2
    assert report.format_table([]) == "(no results)"


@pytest.mark.parametrize("bad", [None, float("nan")])
def test_cell_without_post(bad):
    assert report.cell({"rate": 1.0, "ci_low": 0.9, "ci_high": 1.0, "post": bad}) == "1.000 [0.90, 1.00]"


def test_seed_spread_means_and_ranges_per_cell():
    from fastmem.eval.report import seed_spread

    rows = [{"experiment": "e", "mode": "m", "metric": "read", "rate": r, "seed": s, "n": 10}
            for s, r in enumerate((0.9, 1.0, 0.8))]
    rows.append({"experiment": "e", "mode": "m", "metric": "plain", "rate": 0.0, "seed": 0, "n": 5})
    got = seed_spread(rows).set_index("metric")
    assert list(got.index) == ["read", "plain"]
    assert abs(got.loc["read", "mean"] - 0.9) < 1e-9 and got.loc["read", "low"] == 0.8
    assert got.loc["read", "high"] == 1.0 and got.loc["read", "seeds"] == 3 and got.loc["read", "n"] == 30
    assert got.loc["plain", "seeds"] == 1
