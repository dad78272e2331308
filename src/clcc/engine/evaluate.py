"""One evaluation routine for the trainer, the CLI, the experiment runner and the tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch import nn

from clcc.data.loaders import to_input
from clcc.engine.runtime import Runtime
from clcc.files import atomic_path
from clcc.metrics import METRICS, image_metrics, summarise
from clcc.models.norm import bn_momentum


@torch.no_grad()
def predict_probabilities(
    model: nn.Module, images: np.ndarray | torch.Tensor, runtime: Runtime, batch_size: int = 16
) -> torch.Tensor:
    """Foreground probabilities (N,H,W) on the CPU for uint8 images (N,H,W,3)."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            chunk = torch.from_numpy(np.array(images[start : start + batch_size]))
            x = to_input(chunk.to(runtime.device), runtime.memory_format())
            with runtime.autocast():
                logits = model(x).logits
            out.append(torch.sigmoid(logits.float())[:, 0].cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, images: np.ndarray, runtime: Runtime, batch_size: int = 16
) -> None:
    """Re-estimate every BatchNorm's running statistics as the plain average over `images`.

    A diagnostic (and a remedy) for training schemes that also push other inputs through the
    network, such as CLCC's patches: afterwards the statistics describe full images only.
    """
    was_training = model.training
    model.train()
    try:
        with bn_momentum(model, None) as layers:  # None: cumulative average over all batches
            for m in layers:
                m.reset_running_stats()
            for start in range(0, len(images), batch_size):
                chunk = torch.from_numpy(np.array(images[start : start + batch_size]))
                model(to_input(chunk.to(runtime.device)))
    finally:
        model.train(was_training)


def evaluate(
    model: nn.Module,
    images: np.ndarray,
    masks: np.ndarray,
    names: list[str],
    runtime: Runtime,
    with_hd95: bool = True,
) -> tuple[list[dict], dict[str, dict[str, float]]]:
    """Per-image metrics at threshold 0.5 on probabilities, and their mean ± std."""
    probs = predict_probabilities(model, images, runtime)
    rows = []
    for name, prob, mask in zip(names, probs.numpy(), np.asarray(masks), strict=True):
        row = image_metrics(prob > 0.5, mask > 0, with_hd95=with_hd95)
        rows.append({"case": name, **row})
    return rows, summarise(rows)


def write_per_image_csv(path: Path, rows: list[dict]) -> None:
    with atomic_path(Path(path)) as tmp, open(tmp, "w", newline="") as f:
        names = [m for m in METRICS if rows and m in rows[0]]
        writer = csv.DictWriter(f, fieldnames=["case", *names])
        writer.writeheader()
        writer.writerows(rows)

