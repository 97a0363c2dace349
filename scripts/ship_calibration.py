"""Ship the default offline model's calibration with the package, so a fresh clone's first start does not calibrate.

Run after bumping `CALIBRATION_VERSION` (a change of what calibration decides; `calibration_cache.cache_key`).
It loads the model, calibrating anew unless the cache already holds this key's calibration, replaces every
shipped folder of that model by the current one, and records beside it the verdicts of a fixed sample of
questions (`eval.calibration_reference.verdicts`) that an integration test asks again. With `--tiny` it also
records the tiny test model's calibration summary (`tests/data/tiny_calibration.json`), which every test run
recalibrates and compares.

    python scripts/ship_calibration.py [--model smollm2] [--tiny] [--fresh]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from fastmem.eval.calibration_cache import _folder_name, cache_dir, cache_key, save_calibration  # noqa: E402
from fastmem.eval.calibration_reference import summary, verdicts  # noqa: E402
from fastmem.lab import Lab  # noqa: E402

SHIPPED = ROOT / "fastmem" / "data" / "calibration"
TINY_REFERENCE = ROOT / "tests" / "data" / "tiny_calibration.json"


def ship(model: str, fresh: bool) -> None:
    if fresh:  # recompute, whatever the cache holds
        shutil.rmtree(cache_dir() / "calibration", ignore_errors=True)
    lab = Lab.load(model, device="cpu")
    key = cache_key(lab.lm, lab.suite, 8, 0)
    for old in SHIPPED.glob(_folder_name(lab.lm, "") + "*"):
        shutil.rmtree(old)
    folder = SHIPPED / _folder_name(lab.lm, key)
    save_calibration(folder, key, lab.calibration, lab.geometry)
    (folder / "verdicts.json").write_text(json.dumps(verdicts(lab), indent=0) + "\n")
    size = sum(f.stat().st_size for f in folder.iterdir())
    print(f"shipped {folder.relative_to(ROOT)} ({size / 1024:.0f} kB, key {key})")


def tiny_reference() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import tiny_neox, word_tokenizer

    from fastmem.eval.calibrate import calibrate
    from fastmem.eval.suite import load_suite

    cal, _ = calibrate(tiny_neox(word_tokenizer()), load_suite(), show_progress=False)
    TINY_REFERENCE.parent.mkdir(exist_ok=True)
    TINY_REFERENCE.write_text(json.dumps(summary(cal), indent=1) + "\n")
    print(f"recorded {TINY_REFERENCE.relative_to(ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--tiny", action="store_true", help="also record the tiny test model's calibration summary")
    ap.add_argument("--fresh", action="store_true", help="calibrate anew even if the cache holds this key")
    args = ap.parse_args()
    if args.tiny:
        tiny_reference()
    ship(args.model, args.fresh)


if __name__ == "__main__":
    main()
