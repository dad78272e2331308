"""The README's main job: on the embedded synthetic data, train the supervised baseline and
the semi-supervised methods with the same labelled subset and print a comparison table."""

from __future__ import annotations

import time
from pathlib import Path

from clcc.config import load_config
from clcc.data.prepare import prepare
from clcc.data.synthetic import write_synthetic
from clcc.engine.trainer import train
from clcc.experiment import Variant

DEMO_SETTINGS = [
    "data.size=64",
    "train.epochs=30",
    "train.eval_every=4",
    "train.threads=0",
    "optim.lr=0.003",
]
"""Small enough for a laptop CPU: 64×64 images (generated at 96), 24 labelled of 96 training
cases; CLCC cuts them into 2×2 patches of 32 pixels."""


def run_demo(workdir: Path, methods: list[str], epochs: int | None = None) -> list[dict]:
    """`methods` are experiment entries such as "clcc:n=2" (64-pixel images → 32-pixel patches)."""
    started = time.perf_counter()
    raw, prepared = workdir / "synthetic", workdir / "prepared"
    if not (raw / "images").is_dir():
        write_synthetic(raw, count=160, size=96)
    summary = prepare("folder", raw, prepared, labelled=24, selections=(0,), size=64)
    print(
        f"synthetic data: {summary['train']} train ({summary['labelled']} labelled), "
        f"{summary['val']} val, {summary['test']} test → {prepared}"
    )
    results = []
    for spec in methods:
        variant = Variant(spec)
        overrides = [*DEMO_SETTINGS, f"data.root={prepared}", f"method.name={variant.method}",
                     f"train.output={workdir / 'runs'}", f"train.name={variant.slug}"]
        overrides += [f"method.params.{k}={v}" for k, v in variant.params.items()]
        if epochs:
            overrides.append(f"train.epochs={epochs}")
        print(f"\n== {spec} ==")
        results.append(train(load_config(None, overrides), overwrite=True))
    print("\n| method | test Dice % | test IoU % | test MAE % | best epoch | run folder |")
    print("|---|---|---|---|---|---|")
    for spec, r in zip(methods, results, strict=True):
        t = r["test"]
        print(
            f"| {spec} | {100 * t['dice']['mean']:.1f} ± {100 * t['dice']['std']:.1f} | "
            f"{100 * t['iou']['mean']:.1f} | {100 * t['mae']['mean']:.2f} | {r['best_epoch']} | "
            f"{r['run']} |"
        )
    print(
        f"\nbest checkpoints: <run folder>/best.pt; try `clcc predict --checkpoint "
        f"{results[0]['run']}/best.pt --input {raw / 'images'} --output {workdir / 'predictions'}"
        f" --overlay`\n({time.perf_counter() - started:.0f}s in all)"
    )
    return results
