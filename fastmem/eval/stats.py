"""Rates with 95% Wilson score intervals."""
from __future__ import annotations

import math


def wilson(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n <= 0:
        return (float("nan"), float("nan"))
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The interval always contains p; clamp so rounding cannot put p outside it (10/10 gave 0.999...9).
    return (min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))
