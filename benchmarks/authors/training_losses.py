"""The training loss of SSL4MIS runs of either side, window by window: whether the two fit the
labelled slices alike (a gap in test Dice with equal losses lies in what the weights generalise
to or in the running statistics, not in the fit).

    python benchmarks/authors/training_losses.py evidence/side-by-side/ssl4mis-fixmatch-*

The script's figure is the mean of its per-iteration "model loss" over each window of
`--window` iterations; clcc's the mean of `train/loss` over its logged epochs (11 steps of 6
labelled slices at the quick protocol) whose last step falls in the window.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from recipes import ACDC_LABELLED_SLICES, Protocol
from unlabelled_losses import clcc_losses

SCRIPT_LINE = re.compile(r"iteration (\d+) : model loss : ([\d.]+)")
CLCC_LOSS = re.compile(r"train/loss=([\d.]+)")


def script_losses(log: str, window: int) -> list[float]:
    """Mean "model loss" of iterations 1 … window, window + 1 … 2·window, …"""
    groups: dict[int, list[float]] = {}
    for iteration, loss in SCRIPT_LINE.findall(log):
        groups.setdefault((int(iteration) - 1) // window, []).append(float(loss))
    return [sum(v) / len(v) for _, v in sorted(groups.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="side-by-side run folders")
    parser.add_argument("--window", type=int, default=110, help="iterations a column")
    args = parser.parse_args()
    protocol = Protocol()
    steps = ACDC_LABELLED_SLICES[protocol.labelled_patients] // protocol.labelled_batch
    for run in args.runs:
        record = json.loads((run / "run.json").read_text())
        log = (run / "train.log").read_text(errors="replace")
        means = (script_losses(log, args.window) if record["side"] == "authors" else
                 clcc_losses(log, steps, args.window, protocol.iterations, CLCC_LOSS))
        print(f"{run.name}: " + " ".join(f"{m:.3f}" for m in means))


if __name__ == "__main__":
    main()
