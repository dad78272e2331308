"""Every method's test figures and final weight checksum on a tiny binary synthetic set (2
epochs, fp32, one thread): run it on two commits and compare the JSON files to show that a
change leaves binary training as it was.

    python benchmarks/binary_figures.py WORKDIR OUT.json
"""

import json
import sys
from pathlib import Path

import torch

from clcc.config import load_config
from clcc.data.prepare import prepare
from clcc.data.synthetic import write_synthetic
from clcc.engine.trainer import train
from clcc.methods import METHODS

root = Path(sys.argv[1])
out = {}
if not (root / "prepared").exists():
    write_synthetic(root / "raw", count=40, size=48)
    prepare("folder", root / "raw", root / "prepared", labelled=8, selections=(0,), size=32)
PARAMS = {"clcc": "{n: 2}", "bcp": "{pretrain: 0.5}"}
TINY = ["data.size=32", "train.epochs=2", "train.eval_every=1", "train.labelled_batch=2",
        "train.unlabelled_batch=2", "train.progress=false", "train.threads=1",
        "train.precision=fp32"]
for name in sorted(METHODS):
    widths = "[4,8,16,32,64]" if name == "urpc" else "[4,8,16]"  # URPC needs 5 levels
    sets = [*TINY, f"model.widths={widths}", f"data.root={root / 'prepared'}",
            f"train.output={root / 'runs'}", f"method.name={name}"]
    if name in PARAMS:
        sets.append(f"method.params={PARAMS[name]}")
    r = train(load_config(None, sets), overwrite=True)
    state = torch.load(Path(r["run"]) / "last.pt", weights_only=True)["method"]
    out[name] = {k: r["test"][k]["mean"] for k in ("dice", "iou", "mae")}
    out[name]["weights_abs_sum"] = float(sum(v.double().abs().sum() for v in state.values()
                                             if v.dtype.is_floating_point))
    print(name, out[name], flush=True)
Path(sys.argv[2]).write_text(json.dumps(out, indent=1))
