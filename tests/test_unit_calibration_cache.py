"""The calibration cache: a calibration is used only under the key of the code and prompts that made it; a shipped
one of another key is refused and calibration runs anew."""
import shutil

import torch

from fastmem.eval import calibration_cache
from fastmem.eval.calibration_cache import cache_key, load_or_calibrate, stale_shipped
from fastmem.eval.suite import load_suite


def _counting(monkeypatch, lab):
    """Calibration replaced by the tiny Lab's own (made once per session), counting the times it would run."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return lab.calibration, lab.geometry

    monkeypatch.setattr(calibration_cache, "calibrate", counted)
    return calls


def test_a_stale_shipped_calibration_is_refused_and_a_current_one_is_used(tiny_lab, tmp_path, monkeypatch):
    neox = tiny_lab.lm
    suite = load_suite()
    monkeypatch.setenv("FASTMEM_CACHE", str(tmp_path / "cache"))
    shipped = tmp_path / "shipped"
    calls = _counting(monkeypatch, tiny_lab)
    key = cache_key(neox, suite, 8, 0)

    made, _ = load_or_calibrate(neox, suite, show_progress=False, shipped=shipped)  # nothing anywhere: calibrates
    assert calls == [1]
    cached = tmp_path / "cache" / "calibration" / f"tiny-neox-0-{key}"
    assert (cached / "key").read_text() == key

    stale = shipped / "tiny-neox-0-0123456789ab"  # the same files under another code's key
    shutil.copytree(cached, stale)
    (stale / "key").write_text("0123456789ab")
    shutil.rmtree(tmp_path / "cache")
    assert stale_shipped(neox, key, shipped) == ["tiny-neox-0-0123456789ab"]
    load_or_calibrate(neox, suite, show_progress=False, shipped=shipped)
    assert calls == [1, 1]  # refused: calibrated anew

    current = shipped / f"tiny-neox-0-{key}"
    shutil.copytree(cached, current)
    shutil.rmtree(tmp_path / "cache")
    got, geometry = load_or_calibrate(neox, suite, show_progress=False, shipped=shipped)
    assert calls == [1, 1]  # the shipped calibration of this key: no calibration ran
    assert got.to_json() == made.to_json() and stale_shipped(neox, key, shipped) == ["tiny-neox-0-0123456789ab"]

    (current / "key").write_text("fedcba987654")  # a folder whose key file disagrees with its name is not used
    load_or_calibrate(neox, suite, show_progress=False, shipped=shipped)
    assert calls == [1, 1, 1]
    torch.testing.assert_close(geometry.token_mean, tiny_lab.geometry.token_mean, rtol=0, atol=0)
