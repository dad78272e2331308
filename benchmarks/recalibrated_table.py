"""An experiment's test Dice as saved and with BatchNorm re-estimated: per run, `best.pt` and
`last.pt` each way, and each run minus the reference run paired over the test images, both ways.

At a small batch a checkpoint's running statistics can move its test Dice by tens of points
(docs/fidelity.md, "The weights apart from the running statistics"), so a table of such a
protocol gives both: the method as it trained, and its weights. The re-estimate is `clcc
evaluate --recalibrate-bn` (dropout off, the statistics of the network that predicts), run here
for each checkpoint that has none yet in REEST.

    python benchmarks/recalibrated_table.py runs/acdc-quick-grid runs/acdc-quick-reest \
        --reference supervised-sel0
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from clcc.report.compare import per_image_dice
from clcc.report.stats import paired_comparison

CHECKPOINTS = ("best", "last")


def scored(run: Path, checkpoint: str) -> str:
    """The checkpoint whose scores stand for `checkpoint`: a run whose last weights are its
    best (no `test_last_per_image.csv`) scores them once, as `best`."""
    last_apart = (run / "test_last_per_image.csv").is_file()
    return checkpoint if checkpoint == "best" or last_apart else "best"


def as_saved(run: Path, checkpoint: str) -> dict[str, float]:
    """The trainer's own scoring of the checkpoint (its per-image CSV)."""
    return per_image_dice(run, "test_per_image.csv" if scored(run, checkpoint) == "best"
                          else "test_last_per_image.csv")


def re_estimated(run: Path, checkpoint: str, reest: Path) -> dict[str, float]:
    """The checkpoint scored after `clcc evaluate --recalibrate-bn` (made here when missing)."""
    checkpoint = scored(run, checkpoint)
    out = reest / f"{run.name}-{checkpoint}"
    if not (out / "per_image.csv").is_file():
        subprocess.run([sys.executable, "-m", "clcc", "evaluate", "--checkpoint",
                        str(run / f"{checkpoint}.pt"), "--recalibrate-bn", "--split", "test",
                        "--output", str(out)], check=True)
    return per_image_dice(out, "per_image.csv")


def difference(run: dict[str, float], reference: dict[str, float]) -> str:
    cases = sorted(set(run) & set(reference))
    c = paired_comparison(np.array([run[k] for k in cases]),
                          np.array([reference[k] for k in cases]))
    return (f"{100 * c['mean_diff']:+.2f} [{100 * c['ci_low']:+.2f}, "
            f"{100 * c['ci_high']:+.2f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", type=Path, help="the experiment folder (its run folders)")
    parser.add_argument("reest", type=Path, help="where the re-estimated scorings are kept")
    parser.add_argument("--reference", default="supervised-sel0", help="the run paired against")
    args = parser.parse_args()
    runs = sorted(p.parent for p in args.experiment.glob("*/results.json"))
    scores = {(run.name, ck, way): (as_saved(run, ck) if way == "saved"
                                    else re_estimated(run, ck, args.reest))
              for run in runs for ck in CHECKPOINTS for way in ("saved", "re-estimated")}
    print("| run | best: as saved | best: re-estimated | last: as saved | last: re-estimated "
          f"| best − {args.reference}, as saved | the same, re-estimated |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        cells = [f"{100 * np.mean(list(scores[run.name, ck, way].values())):.2f}"
                 for ck in CHECKPOINTS for way in ("saved", "re-estimated")]
        if run.name == args.reference:
            diffs = ["—", "—"]
        else:
            diffs = [difference(scores[run.name, "best", way], scores[args.reference, "best", way])
                     for way in ("saved", "re-estimated")]
        print(f"| {run.name} | " + " | ".join(cells + diffs) + " |")
    print("\nDifferences: mean paired test Dice over the test images, bootstrap 95 % interval "
          "(the sampling of test images only, one selection and seed).")


if __name__ == "__main__":
    main()
