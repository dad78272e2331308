"""PNG figures: training curves (CLCC's stage boundary marked) and the qualitative grid of
Fig. 3 (image | each method | ground truth)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from clcc.files import atomic_path  # noqa: E402


def _save(fig: Any, path: Path) -> None:
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def stage_boundary(log: list[dict[str, Any]]) -> int | None:
    """First epoch whose mean stage exceeds 1 (CLCC's switch to stage 2), if any."""
    for record in log:
        if record.get("train/stage", 1.0) > 1.0:
            return record["epoch"]
    return None


SELECTION_STYLES = ("-", ":", "-.", (0, (5, 1)))  # dashed is kept for the stage boundary


def training_curves(runs: dict[str, dict[int, list[dict[str, Any]]]], path: Path) -> Path:
    """`runs`: method → selection → per-epoch records. Validation Dice and training loss per
    epoch, one colour per method and one line style per selection."""
    selections = sorted({s for per_method in runs.values() for s in per_method})
    styles = {s: SELECTION_STYLES[i % len(SELECTION_STYLES)] for i, s in enumerate(selections)}
    fig, (ax_val, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.2))
    # the legend: one entry per method (colour) and per selection (line style), beside the
    # plots; one per run would make the legend of a 7 × 3 grid cover the curves
    keys: list[Line2D] = []
    for m, (method, logs) in enumerate(runs.items()):
        colour = f"C{m % 10}"
        keys.append(Line2D([], [], color=colour, label=method))
        for selection, log in logs.items():
            style = {"color": colour, "ls": styles[selection]}
            val = [(r["epoch"], 100 * r["val/dice"]) for r in log if "val/dice" in r]
            if val:
                ax_val.plot(*zip(*val, strict=True), lw=1.2, **style)
            ax_loss.plot([r["epoch"] for r in log], [r["train/loss"] for r in log], lw=1.0,
                         **style)
        boundaries = {stage_boundary(log) for log in logs.values()} - {None}
        for boundary in sorted(boundaries):  # selections share the schedule: usually one line
            for ax in (ax_val, ax_loss):
                ax.axvline(boundary - 0.5, color=colour, ls="--", lw=0.8, alpha=0.7)
    ax_val.set(xlabel="epoch", ylabel="validation Dice (%)", title="Validation Dice")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Training loss (dashed: CLCC stage 2 starts)")
    keys += [Line2D([], [], color="black", ls=styles[s], label=f"selection {s}")
             for s in selections]
    ax_loss.legend(handles=keys, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    _save(fig, path)
    return Path(path)


def column_title(method: str, width: int = 16) -> str:
    """A method entry broken after its commas (and colon) into lines of at most ~`width`
    characters, so that long entries do not run into the next column's title."""
    parts = re.split(r"(?<=[:,])", method)
    lines = [""]
    for part in parts:
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def qualitative_figure(
    images: np.ndarray,
    truths: np.ndarray,
    predictions: dict[str, np.ndarray],
    names: list[str],
    path: Path,
) -> Path:
    """Rows of cases; columns image | each method's mask | ground truth (as in Fig. 3)."""
    columns = ["image", *predictions, "ground truth"]
    fig, axes = plt.subplots(len(names), len(columns), figsize=(1.7 * len(columns),
                                                              1.7 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        panels = [images[row], *(p[row] for p in predictions.values()), truths[row]]
        for col, panel in enumerate(panels):
            ax = axes[row][col]
            ax.imshow(panel, cmap=None if panel.ndim == 3 else "gray", vmin=0, vmax=1 if
                      panel.ndim == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(column_title(columns[col]), fontsize=8)
        axes[row][0].set_ylabel(name[:14], fontsize=6)
    _save(fig, path)
    return Path(path)
