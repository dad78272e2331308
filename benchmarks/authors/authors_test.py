"""SSL4MIS's own per-volume scoring (`code/val_2D.py`: each slice zoomed to the training size
with order 0, argmax, zoomed back with order 0, medpy's Dice per class on the volume) of a
checkpoint, in the authors' environment, to set beside clcc's scoring of the same checkpoint
(`side_by_side.py score`). Run it with the authors' Python and the shim on PYTHONPATH:

    SHIM_ACTIVE=1 PYTHONPATH=benchmarks/authors/shim:../authors/SSL4MIS/code \\
      ../authors-env/bin/python benchmarks/authors/authors_test.py CHECKPOINT \\
      --source ../shared/data/acdc --size 128 --out per_volume_ssl4mis.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np
import torch
from networks.unet import UNet  # SSL4MIS's, from its checkout (net_factory parses argv)
from val_2D import test_single_volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    net = UNet(in_chns=1, class_num=4)
    saved = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(saved, dict) and isinstance(saved.get(key), dict):
            saved = saved[key]
    net.load_state_dict({k.removeprefix("module."): v for k, v in saved.items()})
    net.eval()
    rows = []
    for case in (args.source / f"{args.split}.list").read_text().split():
        with h5py.File(args.source / "data" / f"{case}.h5", "r") as f:
            image, label = f["image"][:], f["label"][:]
        metrics = test_single_volume(torch.from_numpy(image)[None], torch.from_numpy(label)[None],
                                     net, classes=4, patch_size=[args.size, args.size])
        dice = [m[0] for m in metrics]
        rows.append((case, float(np.mean(dice)), *dice))
    args.out.write_text("case,dice,dice_rv,dice_myo,dice_lv\n"
                        + "".join(",".join(map(str, r)) + "\n" for r in rows))
    print(f"{args.checkpoint}: SSL4MIS's val_2D scoring, mean Dice "
          f"{100 * np.mean([r[1] for r in rows]):.2f} over {len(rows)} {args.split} volumes")


if __name__ == "__main__":
    main()
