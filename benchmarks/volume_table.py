"""The table of 3-D runs, as docs/results.md shows LA quick: per method and labelled selection
and seed the test metrics of the checkpoint best on validation and of the last weights, then
per method each one's mean with the Student-t interval over its runs.

    python benchmarks/volume_table.py evidence/la-quick/supervised-sel*-seed0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from clcc.report.stats import selection_interval

COLUMNS = ("method", "selection", "seed", "precision", "best on validation: step", "test Dice",
           "IoU", "HD95", "ASD", "Dice, largest component", "last weights: test Dice",
           "last: Dice, largest component")


def best_step(run: Path, best_epoch: int) -> int:
    """The step of the validation that chose best.pt."""
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["epoch"] == best_epoch and "val_step" in record:
            return int(record["val_step"])
    raise SystemExit(f"{run}: no validation in epoch {best_epoch}")


def precision(run: Path, results: dict) -> str:
    """What the run trained in, as results.json records it; for a run older than that record,
    its config's choice (`auto` is bf16 autocast on a CPU that has it)."""
    if "precision" in results:
        return str(results["precision"])
    return str(yaml.safe_load((run / "config.yaml").read_text())["train"]["precision"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run folders (results.json inside)")
    args = parser.parse_args()
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    runs: dict[str, list[tuple[int, float, float]]] = {}  # method: (seed, best, last) each
    for run in sorted(args.runs):
        if not (run / "results.json").is_file():  # trained, not yet scored
            print(f"| {run.name}: not scored yet |" + " |" * (len(COLUMNS) - 1))
            continue
        r = json.loads((run / "results.json").read_text())
        t, tl, method = r["test"], r["test_last"], r["method"]
        best, last = 100 * t["dice"]["mean"], 100 * tl["dice"]["mean"]
        runs.setdefault(method, []).append((r["seed"], best, last))
        print(f"| {method} | {r['selection']} | {r['seed']} | {precision(run, r)} | "
              f"{best_step(run, r['best_epoch'])} | "
              f"{best:.2f} ± {100 * t['dice']['std']:.2f} | "
              f"{100 * t['iou']['mean']:.2f} | {t['hd95']['mean']:.2f} | "
              f"{t['asd']['mean']:.2f} | {100 * t['dice_lcc']['mean']:.2f} | "
              f"{last:.2f} | {100 * tl['dice_lcc']['mean']:.2f} |")
    for method, found in runs.items():
        seeds, bests, lasts = zip(*found, strict=True)
        for name, values in (("best on validation", bests), ("last weights", lasts)):
            if len(values) < 2:
                print(f"\n{method}, {name}: {values[0]:.2f}, one run (no interval)")
                continue
            i = selection_interval(list(values))
            over = "selections" if len(set(seeds)) == 1 else "runs (selections and seeds)"
            print(f"\n{method}, {name}: {i['mean_diff']:.2f} over {i['k']} {over}, 95 % "
                  f"t-interval [{i['ci_low']:.2f}, {i['ci_high']:.2f}]")


if __name__ == "__main__":
    main()
