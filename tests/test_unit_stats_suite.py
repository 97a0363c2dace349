"""Wilson intervals against known values; the built-in suite's split, labels and reproducibility."""
import math
from importlib import resources

import pytest

from fastmem.eval.stats import wilson
from fastmem.eval.suite import load_suite, make_builtin_suite, suite_json

Z = 1.959964


def wilson_by_formula(k, n, z=Z):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k,n,table", [(0, 10, (0.0, 0.2775)), (5, 10, (0.2366, 0.7634)),
                                       (10, 10, (0.7225, 1.0)), (1, 20, (0.0089, 0.2361))])
def test_wilson_known_values(k, n, table):
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(table[0], abs=1e-4) and hi == pytest.approx(table[1], abs=1e-4)
    f_lo, f_hi = wilson_by_formula(k, n)
    assert lo == pytest.approx(max(0.0, f_lo), abs=1e-12) and hi == pytest.approx(min(1.0, f_hi), abs=1e-12)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_edge_cases():
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    assert all(math.isnan(x) for x in wilson(0, 0))


def test_builtin_suite_split_and_labels():
    suite = load_suite()
    train, test = suite.split("train"), suite.split("test")
    assert train and test
    assert not {w.word for w in train} & {w.word for w in test}
    assert len(train) + len(test) == len(suite.words)
    for w in suite.words:
        assert len(w.labels) == 2 and w.labels[0] != w.labels[1]
    assert suite.train_experiments and all(e.train for e in suite.train_experiments)
    assert not set(suite.unrelated) & set(suite.train_unrelated)


def test_make_builtin_suite_reproduces_the_shipped_file():
    shipped = resources.files("fastmem.data").joinpath("builtin_suite.json").read_text(encoding="utf-8")
    assert suite_json(make_builtin_suite()) == shipped
    assert make_builtin_suite().model_dump() == load_suite().model_dump()


def test_wilson_always_contains_the_rate():
    for n in range(1, 300):
        for k in range(n + 1):
            lo, hi = wilson(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0, (k, n, lo, hi)


def test_extra_builtin_suites_reproduce_their_shipped_files_and_share_the_calibration(smollm2_lab):
    from fastmem.eval.calibration_cache import cache_key
    from fastmem.eval.suite_library import (make_multitoken_suite, make_nonce_colour_suite, make_phrasings_suite,
                                       make_real_words_suite)

    base = make_builtin_suite()
    assert make_phrasings_suite(base).model_dump() == load_suite("phrasings").model_dump()
    assert make_nonce_colour_suite(base).model_dump() == load_suite("nonce-colour").model_dump()
    assert make_real_words_suite(base).model_dump() == load_suite("real-words").model_dump()
    for name in ("nonce-colour", "real-words"):  # other test words: look-alikes avoid them, so own calibration
        assert len(load_suite(name).split("test")) == 32 and load_suite(name).split("train") == base.split("train")
    multi = make_multitoken_suite(base, smollm2_lab.lm.tokenizer)
    assert multi.model_dump() == load_suite("multitoken").model_dump()
    lengths = {len(smollm2_lab.lm.label_tokens(w.labels[0])) for w in multi.split("test")}
    assert lengths == {1, 2, 3, 4}
    lm = smollm2_lab.lm
    assert cache_key(lm, multi, 8, 0) == cache_key(lm, base, 8, 0) == cache_key(lm, load_suite("phrasings"), 8, 0)
    changed = base.model_copy(update={"words": [w.model_copy(update={"labels": ["cat", "dog"]})
                                                if w.split == "train" else w for w in base.words]})
    assert cache_key(lm, changed, 8, 0) != cache_key(lm, base, 8, 0)  # training labels do count
