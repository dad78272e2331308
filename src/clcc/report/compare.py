"""Each method against a reference, at both levels a claim depends on: the random labelled
selection (the interval over selections, and a hierarchical bootstrap) and the test images
(the image-level interval, which counts test-image sampling only)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from clcc.entries import label_of
from clcc.errors import ClccError
from clcc.report.stats import hierarchical_bootstrap, paired_comparison, selection_interval


def per_image_dice(run: Path, name: str = "test_per_image.csv") -> dict[str, float]:
    """Dice of each image of a run's per-image CSV `name` (by default its test)."""
    path = Path(run) / name
    if not path.exists():
        raise ClccError(f"{path}: missing; the run has not finished")
    with open(path) as f:
        return {row["case"]: float(row["dice"]) for row in csv.DictReader(f)}


def compare_with_reference(runs: list[dict[str, Any]], reference: str) -> list[dict[str, Any]]:
    """For every variant but `reference`, on the selections both have: per-selection mean
    ΔDice (×100), the t-interval over selections, the hierarchical bootstrap, and the
    image-level comparison of per-image Dice averaged over those selections (×100)."""
    dice = {(r["variant"], r["selection"]): per_image_dice(Path(r["run"])) for r in runs}
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    labels = {r["variant"]: label_of(r) for r in runs}
    out = []
    for variant in variants:
        if variant == reference:
            continue
        selections = sorted(s for v, s in dice if v == variant and (reference, s) in dice)
        if not selections:
            continue
        cases = sorted(dice[(reference, selections[0])])
        diffs = [100 * (np.array([dice[(variant, s)][c] for c in cases])
                        - np.array([dice[(reference, s)][c] for c in cases]))
                 for s in selections]
        images = paired_comparison(np.mean(diffs, axis=0), np.zeros(len(cases)))
        out.append({
            "a": variant, "b": reference, "a_label": labels[variant],
            "b_label": labels[reference], "selections": selections,
            "per_selection": [float(d.mean()) for d in diffs],
            "over_selections": selection_interval([d.mean() for d in diffs]),
            "hierarchical": hierarchical_bootstrap(diffs),
            "images": images,
        })
    return out


def verdict(c: dict[str, Any]) -> str:
    """What the interval over selections supports, in words."""
    low, high = c["over_selections"]["ci_low"], c["over_selections"]["ci_high"]
    if np.isnan(low):
        return "one selection: no interval over selections"
    if low > 0:
        return "better, shown over selections"
    if high < 0:
        return "worse, shown over selections"
    return "no difference shown"


def interval_text(stat: dict[str, float]) -> str:
    """"[low, high]", or "–" where there is no interval (a single selection)."""
    if np.isnan(stat["ci_low"]):
        return "–"
    return f"[{stat['ci_low']:+.2f}, {stat['ci_high']:+.2f}]"


def comparison_lines(comparisons: list[dict[str, Any]]) -> list[str]:
    """A markdown table of the comparisons (×100 Dice)."""
    lines = ["| method − reference | per selection | mean | 95 % over selections (t) | "
             "hierarchical bootstrap | test-image sampling only | verdict |",
             "|---|---|---|---|---|---|---|"]
    for c in comparisons:
        o, h, i = c["over_selections"], c["hierarchical"], c["images"]
        lines.append(
            f"| {c['a_label']} − {c['b_label']} | "
            f"{' / '.join(f'{d:+.2f}' for d in c['per_selection'])} | "
            f"{o['mean_diff']:+.2f} | {interval_text(o)} | "
            f"{interval_text(h)} | {interval_text(i)}, p = {i['p_mean']:.2g} (sign-flip) | "
            f"{verdict(c)} |"
        )
    return lines


def per_class_text(row: dict[str, Any]) -> str:
    """"rv 80.10 / myo 70.20 / lv 85.00": a multi-class row's mean Dice of each class."""
    return " / ".join(f"{c} {v:.2f}" for c, v in row.get("dice_per_class", {}).items())
