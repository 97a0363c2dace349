"""The calibration key holds no source bytes; a change of what calibration decides is caught by recalibrating the tiny
model against its stored summary (`tests/data/tiny_calibration.json`, written by
`python scripts/ship_calibration.py --tiny`). Bump `CALIBRATION_VERSION` and reship when it fails on purpose."""
import json
import pathlib
from pathlib import Path

from fastmem.eval.calibrate import calibrate
from fastmem.eval.calibration_cache import cache_key
from fastmem.eval.calibration_reference import summary, summary_differences
from fastmem.eval.suite import load_suite

REFERENCE = Path(__file__).parent / "data" / "tiny_calibration.json"


def test_the_tiny_calibration_decides_what_its_reference_recorded(tiny_lab):
    recorded = json.loads(REFERENCE.read_text())
    assert summary_differences(summary(tiny_lab.calibration), recorded) == [], \
        "calibration decides otherwise: bump CALIBRATION_VERSION and run scripts/ship_calibration.py --tiny"


def test_a_change_of_scoring_behaviour_is_caught_by_the_reference(neox, tiny_lab, monkeypatch):
    """A deliberate change of how span_match scores (every score a little lower) moves its calibrated threshold:
    the summary no longer matches the reference, so CI fails until the version is bumped and reshipped."""
    from fastmem.memory import modes

    mode = modes.get_mode("span_match")
    plain = type(mode).score

    def lower(self, query):
        got = plain(self, query)
        return modes.Scored(got.scores * 0.9, None if got.rank is None else got.rank * 0.9, got.spans)

    monkeypatch.setattr(type(mode), "score", lower)
    changed, _ = calibrate(neox, load_suite(), show_progress=False)
    differences = summary_differences(summary(changed), json.loads(REFERENCE.read_text()))
    assert any("span_match" in d for d in differences), differences


def test_the_key_reads_no_source_so_a_comment_needs_no_new_calibration(neox, monkeypatch):
    """The key is computed without reading any module's source: a comment, a rename or a refactor keeps it."""
    read = []
    for name in ("read_bytes", "read_text"):
        original = getattr(pathlib.Path, name)

        def spy(self, *a, _original=original, **k):
            if self.suffix == ".py":
                read.append(self.name)
            return _original(self, *a, **k)
        monkeypatch.setattr(pathlib.Path, name, spy)
    key = cache_key(neox, load_suite(), 8, 0)
    assert read == [] and key == cache_key(neox, load_suite(), 8, 0)
    assert cache_key(neox, load_suite(), 8, 1) != key and cache_key(neox, load_suite(), 4, 0) != key
