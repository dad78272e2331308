"""Timing shared by the benchmark scripts (run them as `python benchmarks/<script>.py`)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch


def synchronize(device: torch.device | None) -> None:
    """Wait for the device's queued work: a GPU returns from a launch long before the kernel
    ends, so a clock read without this measures the launch, not the work."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device is not None and device.type == "mps":
        torch.mps.synchronize()


def median_seconds(
    fn: Callable[[], object], repeats: int, device: torch.device | None = None,
    warmup: int = 1, inner: int = 1,
) -> float:
    """Median seconds of one `fn()` call over `repeats` timings of `inner` calls each, after
    `warmup` calls; the device is synchronised before every clock read."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        synchronize(device)
        times.append((time.perf_counter() - start) / inner)
    return float(np.median(times))
