"""Paired comparison of two methods on the same test images, within one labelled selection
(image-level) and across selections (the labelled draw is random too)."""

from __future__ import annotations

import numpy as np
from scipy.stats import t as t_dist
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


def selection_interval(deltas: list[float] | np.ndarray) -> dict[str, float]:
    """Mean of per-selection differences with a Student-t 95 % interval over the selections:
    the labelled subset is a random draw, and with 2–3 draws this is what a claim can rest on
    (NaN bounds with a single selection)."""
    d = np.asarray(deltas, float)
    k = len(d)
    half = float(t_dist.ppf(0.975, k - 1) * d.std(ddof=1) / np.sqrt(k)) if k > 1 else np.nan
    return {"mean_diff": float(d.mean()), "ci_low": float(d.mean() - half),
            "ci_high": float(d.mean() + half), "k": k}


def hierarchical_bootstrap(
    diffs: list[np.ndarray], n_boot: int = 5000, seed: int = 0
) -> dict[str, float]:
    """Percentile 95 % interval of the mean paired difference, resampling the selections and
    then the images within each drawn selection (both sources of variation at once)."""
    rng = np.random.default_rng(seed)
    per = [np.asarray(d, float) for d in diffs]
    means = np.empty(n_boot)
    for i in range(n_boot):
        chosen = rng.integers(0, len(per), len(per))
        means[i] = np.mean([per[j][rng.integers(0, len(per[j]), len(per[j]))].mean()
                            for j in chosen])
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean_diff": float(np.mean([d.mean() for d in per])), "ci_low": float(low),
            "ci_high": float(high), "k": len(per)}
