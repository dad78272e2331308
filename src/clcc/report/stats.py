"""Paired per-image comparison of two methods on the same test images."""

from __future__ import annotations

import numpy as np
from scipy.stats import wilcoxon


def paired_comparison(
    a: np.ndarray, b: np.ndarray, n_boot: int = 5000, seed: int = 0
) -> dict[str, float]:
    """Mean of a − b with a percentile-bootstrap 95 % CI, and the two-sided Wilcoxon
    signed-rank p-value (1.0 when every difference is zero)."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (n_boot, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    p = 1.0 if not np.any(diff) else float(wilcoxon(diff).pvalue)
    return {"mean_diff": float(diff.mean()), "ci_low": float(low), "ci_high": float(high),
            "p_wilcoxon": p, "n": int(len(diff))}
