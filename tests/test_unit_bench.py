"""Calibration and the benchmark on a tiny random model: shapes of the result, valid intervals, frozen model."""
import math

import pytest

from fastmem.lab import Lab

from fastmem.eval.bench import BENCH_MODES, METRICS, rows_to_csv, run_bench
from fastmem.eval.report import format_table
from fastmem.eval.calibrate import calibrate
from fastmem.memory.modes import MODES
from fastmem.eval.suite import make_builtin_suite
from test_unit_lm import checksum

WORDS = 3


@pytest.fixture(scope="module")
def small_suite():
    # a prefix of the built-in word list (so the tiny word tokenizer knows every word), 16 train / 8 test
    return make_builtin_suite(n_train=16, n_test=8)


@pytest.fixture(scope="module")
def calibrated(neox, small_suite):
    before = checksum(neox.model)
    cal, geometry = calibrate(neox, small_suite, value_steps=4, seed=0, show_progress=False)
    return cal, geometry, before


def test_calibration_leaves_the_model_unchanged(neox, calibrated):
    cal, geometry, before = calibrated
    assert checksum(neox.model) == before
    assert not any(p.requires_grad for p in neox.model.parameters())
    for layer in (cal.key_layer, cal.symbol_layer, cal.context_layer):
        assert 0 <= layer <= neox.n_layers
    assert set(cal.modes) == set(MODES)
    assert set(cal.points) == {"post", "selective"} and all(set(p) == set(MODES) for p in cal.points.values())
    assert geometry.projector is not None and geometry.projector.config.layer == cal.key_layer
    assert geometry.symbol_baseline.shape == (neox.hidden_size,)


def test_run_bench_rows_for_every_experiment_mode_metric(neox, small_suite, calibrated):
    cal, geometry, before = calibrated
    progress = []
    rows, timing = run_bench(Lab(neox, cal, geometry), small_suite, modes=BENCH_MODES, words_per_experiment=WORDS,
                             progress=lambda done, total: progress.append((done, total)))
    experiments = [e.name for e in small_suite.experiments]
    metrics = METRICS + tuple(f"paraphrase:{p.name}" for p in small_suite.paraphrases)
    keys = [(r.experiment, r.mode, r.metric) for r in rows]
    assert len(keys) == len(set(keys)) == len(experiments) * len(BENCH_MODES) * len(metrics)
    assert set(keys) == {(e, m, k) for e in experiments for m in BENCH_MODES for k in metrics}
    n_unrelated = len(small_suite.unrelated)
    n_wrong = 2 * (len(experiments) - 1) + len(small_suite.unseen_contexts)  # other experiments' + unused contexts
    for r in rows:
        # every written context here (game A-D, the north/south lab) is in a series: up to 3 unwritten siblings
        # each (the lab has only east and west left); and has two words to swap
        n_siblings = 2 if "lab" in r.experiment else 6
        expected_n = {"write": 2 * WORDS, "read": 2 * WORDS, "plain": WORDS, "wrong_context": WORDS * n_wrong,
                      "lookalike": 3 * WORDS, "sibling": n_siblings * WORDS, "swapped": 2 * WORDS,
                      }.get(r.metric, 2 * WORDS if r.metric.startswith("paraphrase:") else n_unrelated)
        if r.metric == "kept":  # only the fact prompts this (random) model answers right
            expected_n = r.n
        assert r.n == expected_n and 0 <= r.hits <= r.n, r
        if r.n:
            assert r.rate == r.hits / r.n
            assert 0.0 <= r.ci_low <= r.rate <= r.ci_high <= 1.0, r
        assert r.model == neox.name and r.key_layer == cal.key_layer
    for r in rows:
        if r.mode == "none" and r.metric == "unchanged":
            assert r.rate == 1.0
    assert progress[-1][0] == progress[-1][1]
    assert timing.forward_passes == progress[-1][1]
    assert checksum(neox.model) == before
    table = format_table(rows)
    assert all(e in table for e in experiments) and "dual_key" in table
    assert rows_to_csv(rows).count("\n") == len(rows) + 1


def test_run_bench_subset_of_experiments_and_modes(neox, small_suite, calibrated):
    cal, geometry, _ = calibrated
    rows, _ = run_bench(Lab(neox, cal, geometry), small_suite, experiments=["same game A/B"], modes=["none", "dual_key"],
                        words_per_experiment=2)
    assert {(r.experiment, r.mode) for r in rows} == {("same game A/B", "none"), ("same game A/B", "dual_key")}
    none = {r.metric: r for r in rows if r.mode == "none"}
    assert none["unchanged"].rate == 1.0 and not math.isnan(none["read"].ci_low)
