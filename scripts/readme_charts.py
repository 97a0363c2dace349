"""The README's charts as PNG files, drawn by the same chart functions as the Benchmark page.

    python -m fastmem baselines --model smollm2 --json baselines.json
    python -m fastmem scale --model smollm2 --sizes 100 1000 10000 100000 --json scale.json
    python scripts/readme_charts.py --baselines baselines.json --scale scale.json

Writes docs/charts/baselines.png and docs/charts/capacity.png. Needs `vl-convert-python` (in requirements.txt):
altair uses it to save a PNG.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from fastmem.demo import charts

OUT = Path(__file__).resolve().parent.parent / "docs" / "charts"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baselines", help="JSON from `python -m fastmem baselines --json`")
    parser.add_argument("--scale", help="JSON from `python -m fastmem scale --json`")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.baselines:
        got = json.loads(Path(args.baselines).read_text())
        charts.baselines_chart(got["rows"], got["costs"]).save(OUT / "baselines.png", scale_factor=1.5)
        print(OUT / "baselines.png")
    if args.scale:
        got = json.loads(Path(args.scale).read_text())
        charts.capacity_chart(got["points"], got["timings"]).save(OUT / "capacity.png", scale_factor=1.5)
        print(OUT / "capacity.png")


if __name__ == "__main__":
    main()
