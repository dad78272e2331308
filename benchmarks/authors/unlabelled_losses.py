"""The strong-view loss of FixMatch / UniMatch runs, epoch by epoch of UniMatch's unlabelled
loader (207 iterations at the quick protocol), for run folders of either side: where a run's
pseudo-labels stayed all background (the 4-class Dice over confident pixels sits at 0.75: one
class, background, matched, three empty) and when it left that.

    python benchmarks/authors/unlabelled_losses.py evidence/side-by-side/unimatch-*-s0-*

The script's figure is its log's running mean of "Loss s" ((s1 + s2) / 2) at the last line of
each epoch; clcc's the mean of its `train/loss_u_s*` terms over the logged epochs (11 steps
each) whose last step falls in that UniMatch epoch.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from recipes import ACDC_LABELLED_SLICES, Protocol, unimatch_epoch_length, unimatch_epochs

SCRIPT_LINE = re.compile(r"Loss s: ([\d.]+)")
CLCC_LINE = re.compile(r"^epoch (\d+) .*", re.MULTILINE)
CLCC_TERM = re.compile(r"train/loss_u_s\d=([\d.]+)")


def script_losses(log: str) -> list[float]:
    """The last running mean of each epoch (an epoch starts at "===========> Epoch")."""
    means: list[float] = []
    for epoch in log.split("===========> Epoch")[1:]:
        found = SCRIPT_LINE.findall(epoch)
        if found:
            means.append(float(found[-1]))
    return means


def clcc_losses(log: str, steps_per_logged_epoch: int, epoch_length: int, total: int,
                term: re.Pattern[str] = CLCC_TERM) -> list[float]:
    """Per UniMatch epoch (or any window of `epoch_length` steps), the mean of the logged
    epochs' `term`s, by default the strong-view ones (the run's last logged epoch is cut short
    at `total` steps)."""
    groups: dict[int, list[float]] = {}
    for line in CLCC_LINE.finditer(log):
        terms = [float(t) for t in term.findall(line.group(0))]
        if terms:
            last_step = min(int(line.group(1)) * steps_per_logged_epoch, total)
            groups.setdefault((last_step - 1) // epoch_length, []).append(sum(terms) / len(terms))
    return [sum(v) / len(v) for _, v in sorted(groups.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="side-by-side run folders")
    args = parser.parse_args()
    protocol = Protocol()
    # clcc logs an epoch of labelled batches: 68 slices make 11 of 6 (the short one dropped)
    steps = ACDC_LABELLED_SLICES[protocol.labelled_patients] // protocol.labelled_batch
    length = unimatch_epoch_length(protocol)
    total = length * unimatch_epochs(protocol)
    for run in args.runs:
        if not (run / "run.json").is_file():  # e.g. a stopped run's kept log: not a run
            print(f"{run.name}: no run.json, skipped")
            continue
        record = json.loads((run / "run.json").read_text())
        log = (run / "train.log").read_text(errors="replace")
        means = (script_losses(log) if record["side"] == "authors"
                 else clcc_losses(log, steps, length, total))
        print(f"{run.name}: " + " ".join(f"{m:.2f}" for m in means))


if __name__ == "__main__":
    main()
