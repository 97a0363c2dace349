"""Ship the default offline model's calibration with the package, so a fresh clone's first start does not calibrate.

Run after the last change to anything calibration reads (its cache key covers the model, the training prompts,
the settings and the source of every module calibration runs). It loads the model (calibrating once if the
cache has no calibration for this key), then replaces every shipped folder of that model by the current one.

    python scripts/ship_calibration.py [--model smollm2]
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fastmem.eval.calibration_cache import _folder_name, cache_key, save_calibration
from fastmem.lab import Lab

SHIPPED = Path(__file__).resolve().parents[1] / "fastmem" / "data" / "calibration"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    args = ap.parse_args()
    lab = Lab.load(args.model)
    key = cache_key(lab.lm, lab.suite, 8, 0)
    for old in SHIPPED.glob(_folder_name(lab.lm, "") + "*"):
        shutil.rmtree(old)
    folder = SHIPPED / _folder_name(lab.lm, key)
    save_calibration(folder, key, lab.calibration, lab.geometry)
    size = sum(f.stat().st_size for f in folder.iterdir())
    print(f"shipped {folder.relative_to(SHIPPED.parents[2])} ({size / 1024:.0f} kB, key {key})")


if __name__ == "__main__":
    main()
