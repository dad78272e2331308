"""Paired comparison of two methods on the same test images, within one labelled selection
(image-level) and across selections (the labelled draw is random too)."""

from __future__ import annotations

import numpy as np
from scipy.stats import t as t_dist


def paired_comparison(
    a: np.ndarray, b: np.ndarray, n_boot: int = 5000, seed: int = 0
) -> dict[str, float]:
    """Mean of a − b with a percentile-bootstrap 95 % CI, and the two-sided p-value of a
    paired sign-flip permutation test of that same mean (`p_mean`): the interval and the p
    test one thing (a rank test, which tests the median of the differences, could disagree
    with the interval and read as a contradiction)."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (n_boot, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean_diff": float(diff.mean()), "ci_low": float(low), "ci_high": float(high),
            "p_mean": sign_flip_p(diff, n_boot, seed), "n": int(len(diff))}


def sign_flip_p(diff: np.ndarray, n_perm: int = 5000, seed: int = 0) -> float:
    """Two-sided p of "the mean paired difference is 0": under that null each difference's
    sign is exchangeable, so the mean with random signs is its null distribution; exact over
    all 2^n sign patterns when n ≤ 12. (1 + hits) / (1 + draws) for the sampled test."""
    diff = np.asarray(diff, float)
    observed = abs(diff.mean()) - 1e-12 * max(1.0, float(np.abs(diff).max(initial=0)))
    if len(diff) <= 12:
        signs = 1 - 2 * ((np.arange(2 ** len(diff))[:, None] >> np.arange(len(diff))) & 1)
        return float(np.mean(np.abs((signs * diff).mean(axis=1)) >= observed))
    rng = np.random.default_rng(seed + 1)
    signs = rng.choice([-1.0, 1.0], size=(n_perm, len(diff)))
    hits = int(np.sum(np.abs((signs * diff).mean(axis=1)) >= observed))
    return (1 + hits) / (1 + n_perm)


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


def welch_interval(a: list[float] | np.ndarray, b: list[float] | np.ndarray
                   ) -> dict[str, float]:
    """Mean of a − mean of b for two independent groups of runs (seeds of the authors' code
    against seeds of clcc's), with Welch's 95 % t interval (Welch–Satterthwaite degrees of
    freedom); NaN bounds unless both groups have two or more runs."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    diff = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return {"mean_diff": diff, "ci_low": np.nan, "ci_high": np.nan}
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = float(np.sqrt(vx + vy))
    if se == 0:
        return {"mean_diff": diff, "ci_low": diff, "ci_high": diff}
    dof = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    half = float(t_dist.ppf(0.975, dof) * se)
    return {"mean_diff": diff, "ci_low": diff - half, "ci_high": diff + half}
