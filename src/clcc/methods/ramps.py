"""Ramp-ups of the consistency weight, measured in training progress (0 → 1), so that they
work for any number of epochs."""

from __future__ import annotations

import math


def sigmoid_rampup(progress: float, length: float) -> float:
    """exp(−5(1 − t)²) with t = progress / length clipped to [0, 1] (Laine & Aila, 2017)."""
    if length <= 0:
        return 1.0
    t = min(max(progress / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)
