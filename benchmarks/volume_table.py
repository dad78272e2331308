"""The table of a 3-D run per labelled selection, as docs/results.md shows LA quick: per
selection the test metrics of the checkpoint best on validation and of the last weights, then
each one's mean with the Student-t interval over selections.

    python benchmarks/volume_table.py evidence/la-quick/supervised-sel*-seed0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clcc.report.stats import selection_interval


def best_step(run: Path, best_epoch: int) -> int:
    """The step of the validation that chose best.pt."""
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["epoch"] == best_epoch and "val_step" in record:
            return int(record["val_step"])
    raise SystemExit(f"{run}: no validation in epoch {best_epoch}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run folders (results.json inside)")
    args = parser.parse_args()
    print("| selection | best on validation: step | test Dice | IoU | HD95 | ASD | Dice, largest "
          "component | last weights: test Dice | last: Dice, largest component |")
    print("|---|---|---|---|---|---|---|---|---|")
    best, last = [], []
    for run in sorted(args.runs):
        if not (run / "results.json").is_file():  # trained, not yet scored
            print(f"| {run.name}: not scored yet | | | | | | | | |")
            continue
        r = json.loads((run / "results.json").read_text())
        t, tl = r["test"], r["test_last"]
        best.append(100 * t["dice"]["mean"])
        last.append(100 * tl["dice"]["mean"])
        print(f"| {r['selection']} | {best_step(run, r['best_epoch'])} | "
              f"{best[-1]:.2f} ± {100 * t['dice']['std']:.2f} | {100 * t['iou']['mean']:.2f} | "
              f"{t['hd95']['mean']:.2f} | {t['asd']['mean']:.2f} | "
              f"{100 * t['dice_lcc']['mean']:.2f} | {last[-1]:.2f} | "
              f"{100 * tl['dice_lcc']['mean']:.2f} |")
    for name, values in (("best on validation", best), ("last weights", last)):
        i = selection_interval(values)
        print(f"\n{name}: {i['mean_diff']:.2f} over {i['k']} selections, 95 % t-interval "
              f"[{i['ci_low']:.2f}, {i['ci_high']:.2f}]")


if __name__ == "__main__":
    main()
