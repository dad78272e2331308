"""A run's chosen checkpoint scored with BatchNorm statistics re-estimated on different parts
of the training pool: where `score --recalibrate-bn` moves a figure a long way, whether the
labelled slices' statistics or the unlabelled ones' make it, or the order of the batches.

    python benchmarks/authors/batchnorm_sources.py RUN --prepared ../sbs/acdc-3-128

Prints test Dice (%) on the prepared set's test split: as saved; statistics of the selection-0
labelled slices; of the rest of the pool; of the whole pool in random order (`score
--recalibrate-bn` averages batches of 16 slices in the pool's order, mostly one patient's each;
training's batches mix patients). Every estimate with dropout off, as `recalibrate_batchnorm`.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch
from side_by_side import open_run, re_estimate_batchnorm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--prepared", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from clcc.engine.evaluate import evaluate_prepared

    _, _, saved, data, runtime, _ = open_run(args.run, args.prepared)

    def test_dice(model: torch.nn.Module) -> float:
        model.eval()
        return 100 * evaluate_prepared(model, data, data.subset("test"), runtime)[1]["dice"]["mean"]

    print(f"as saved: {test_dice(saved):.2f}")
    pool, labelled = data.training_pool(), data.labelled(0)
    shuffled = np.random.default_rng(0).permutation(pool)  # batches of many patients
    for name, slices in (("labelled (selection 0)", labelled),
                         ("unlabelled", np.setdiff1d(pool, labelled)),
                         ("the whole pool in random order", shuffled)):
        model = copy.deepcopy(saved)  # the checkpoint's weights and statistics, each time
        re_estimate_batchnorm(model, data, runtime, slices)
        print(f"statistics of {name}, {len(slices)} slices: {test_dice(model):.2f}")


if __name__ == "__main__":
    main()
