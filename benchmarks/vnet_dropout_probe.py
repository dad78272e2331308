"""Which of the V-Net's two Dropout3d layers CLCC 3-D fails with (docs/results.md, "the
dropout was the collapse"): train a run with one of them kept and the other removed.

With both (`model.dropout=[0,0,0,0,0.5]`) CLCC at LA quick collapses; with neither it trains.
Neither the config nor a method can remove just one (every method's V-Net carries UA-MT's
pair), so this builds the run as `clcc train` does, replaces the other layer by an identity
before the first step, notes which in the run folder (`probe.json`), and trains.

    python benchmarks/vnet_dropout_probe.py --keep head --config configs/la-quick.yaml \
        --set data.root=../sbs/la-8 --set method.name=clcc --set method.params.n=2 \
        --set "model.dropout=[0,0,0,0,0.5]" --set train.name=clcc-head-dropout-only
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from torch import nn

from clcc.config import load_config
from clcc.engine.trainer import Trainer
from clcc.files import exclusive

LAYERS = {"head": "head_dropout", "bottleneck": "bottleneck_dropout"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", required=True, choices=sorted(LAYERS),
                        help="the dropout layer left in; the other one is removed")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.set)
    with exclusive(cfg.run_dir()):
        trainer = Trainer(cfg)
        trainer.initialize()
        removed = next(name for keep, name in LAYERS.items() if keep != args.keep)
        model = trainer.method.model
        if not isinstance(getattr(model, LAYERS[args.keep], None), nn.Dropout3d):
            raise SystemExit(f"{type(model).__name__} has no {LAYERS[args.keep]} to keep: "
                             "set model.name=vnet and a model.dropout above 0")
        setattr(model, removed, nn.Identity())
        (trainer.run_dir / "probe.json").write_text(json.dumps(
            {"kept": LAYERS[args.keep], "removed": removed}) + "\n")
        trainer.fit()


if __name__ == "__main__":
    main()
