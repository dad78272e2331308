"""One evaluation routine for the trainer, the CLI, the experiment runner and the tests."""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from clcc.config import Config
from clcc.data.loaders import to_input
from clcc.data.prepare import PreparedData
from clcc.data.volume_data import VolumeData, open_configured, random_crop, to_shape
from clcc.engine.runtime import Runtime
from clcc.errors import ClccError
from clcc.files import atomic_path
from clcc.metrics import (
    METRICS,
    class_metrics,
    keep_largest_components,
    summarise,
    volume_metrics,
)
from clcc.models.norm import bn_momentum


@torch.no_grad()
def predict_probabilities(
    model: nn.Module, images: np.ndarray | torch.Tensor, runtime: Runtime, batch_size: int = 16
) -> torch.Tensor:
    """Probabilities (N,heads,H,W) on the CPU for uint8 images (N,H,W,C): the foreground
    probability of a binary model (heads 1), the class probabilities of a multi-class one."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            chunk = torch.from_numpy(np.array(images[start : start + batch_size]))
            x = to_input(chunk.to(runtime.device), runtime.memory_format())
            with runtime.autocast():
                logits = model(x).logits
            out.append(model.labels.probabilities(logits).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


PATCHES_PER_VOLUME = 4
"""Random patches of each training volume that re-estimate a 3-D network's statistics."""


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, inputs: Iterable[torch.Tensor]) -> None:
    """Re-estimate every BatchNorm's running statistics as the plain average over the
    batches `inputs` (network inputs), with dropout off: the statistics of the network that
    predicts.

    A diagnostic (and a remedy) for training schemes that also push other inputs through the
    network, such as CLCC's patches, or whose running average follows a few small batches:
    afterwards the statistics describe the given inputs only. Training's averages also carry
    dropout's variance (×1/(1 − p) after a dropout of rate p, SSL4MIS's 0.5 before its
    bottleneck's second convolution), which evaluation, without dropout, never sees.
    """
    was_training = model.training
    model.train()
    for m in model.modules():
        if isinstance(m, _DropoutNd):
            m.eval()
    try:
        with bn_momentum(model, None) as layers:  # None: cumulative average over all batches
            for m in layers:
                m.reset_running_stats()
            for x in inputs:
                model(x)
    finally:
        model.train(was_training)


def pool_inputs(data: PreparedData, runtime: Runtime, cases: np.ndarray | None = None,
                batch_size: int = 16) -> Iterator[torch.Tensor]:
    """Network inputs of the training pool (or of the image / case indices `cases`): images
    or slices (B, C, H, W) in batches of `batch_size`; for a volume set, `PATCHES_PER_VOLUME`
    random patches (B, C, D, H, W) of its window from each volume (seeded: the same every
    time), in batches of 2."""
    cases = data.training_pool() if cases is None else cases
    if not isinstance(data, VolumeData):
        for start in range(0, len(cases), batch_size):
            chunk = torch.from_numpy(np.array(data.images[cases[start : start + batch_size]]))
            yield to_input(chunk.to(runtime.device))
        return
    rng = np.random.default_rng(0)
    patches = [random_crop([data.image(int(i))], data.window, rng)[0]
               for i in cases for _ in range(PATCHES_PER_VOLUME)]
    for start in range(0, len(patches), 2):
        yield torch.from_numpy(np.stack(patches[start : start + 2])).to(runtime.device)


def evaluate(
    model: nn.Module,
    images: np.ndarray,
    masks: np.ndarray,
    names: list[str],
    runtime: Runtime,
    with_hd95: bool = True,
) -> tuple[list[dict], dict[str, dict[str, float]]]:
    """Per-image metrics of the hard prediction (probability > 0.5, or the argmax), per class
    and averaged over the foreground classes, and their mean ± std."""
    predicted = predict_labels(model, images, runtime)
    rows = []
    for name, pred, mask in zip(names, predicted, np.asarray(masks), strict=True):
        row = class_metrics(pred, mask, model.labels, with_hd95=with_hd95)
        rows.append({"case": name, **row})
    return rows, summarise(rows)


def predict_labels(model: nn.Module, images: np.ndarray | torch.Tensor, runtime: Runtime
                   ) -> np.ndarray:
    """Label maps (N,H,W) uint8 of the model's hard prediction."""
    probs = predict_probabilities(model, images, runtime)
    return model.labels.hard(probs)[:, 0].numpy().astype(np.uint8)


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Label maps (D,S,S) uint8 → (D,height,width), nearest neighbour (as SSL4MIS's test
    zooms a volume's predicted slices back with order 0)."""
    return np.stack([np.asarray(Image.fromarray(p).resize((width, height), Image.NEAREST))
                     for p in labels])


def check_fits(model: nn.Module, data: PreparedData, checkpoint: Path, root: Path) -> None:
    """Refuse, before any image goes through it, a model whose input channels or classes are
    not the prepared set's: a grey set through an RGB model ends in a PyTorch traceback, and
    class-wise Dice against a truth of other classes is a wrong figure with exit 0."""
    def kind(channels: int) -> str:
        return {1: "grey (1 channel)", 3: "RGB (3 channels)"}.get(channels,
                                                                 f"{channels} channels")

    if model.in_channels != data.channels:
        raise ClccError(f"{checkpoint}: the model takes {kind(model.in_channels)} images but "
                        f"{root} holds {kind(data.channels)} ones; evaluate it on data like "
                        "its training set")
    if model.labels.names != data.labels.names:
        raise ClccError(f"{checkpoint}: the model segments {', '.join(model.labels.names)} "
                        f"but {root} is labelled {', '.join(data.labels.names)}; evaluate it "
                        "on data with its classes")


def checkpoint_data(cfg: Config, model: nn.Module, checkpoint: Path, root: Path | None = None
                    ) -> PreparedData:
    """The prepared set to score `checkpoint` on: `root`, else the one it was trained on, opened
    as it trained; refused when it is missing or does not fit the model (`check_fits`)."""
    where = Path(root or cfg.data.root)
    if not where.is_dir():
        hint = (" (the checkpoint's data.root is relative to the folder it was trained from); "
                "pass --data") if not where.is_absolute() and root is None else ""
        raise ClccError(f"{where}: prepared data set not found{hint}")
    data = open_configured(cfg, where)
    check_fits(model, data, checkpoint, where)
    return data


def evaluate_prepared(model: nn.Module, data: PreparedData, names: list[str],
                      runtime: Runtime, with_hd95: bool = True
                      ) -> tuple[list[dict], dict[str, dict[str, float]]]:
    """Per-case metrics of cases `names` of a prepared set: a 2-D image at the training size
    (`evaluate`); a volume as the field scores it, each slice predicted at the training size,
    the label map resized back to the volume's own, scored in 3-D (`volume_metrics`); or, for
    a 3-D network on whole volumes (`VolumeData`), by sliding window (`predict_volume`)."""
    if isinstance(data, VolumeData):
        return evaluate_volumes(model, data, names, runtime, with_hd95)
    if not data.volumes:
        idx = data.indices(names, "the evaluated split")
        return evaluate(model, data.images[idx], data.masks[idx], names, runtime, with_hd95)
    rows = []
    for name in names:
        truth = data.native(name)
        slices = predict_labels(model, data.images[data.indices([name], name)], runtime)
        measure = functools.partial(volume_metrics, spacing=data.spacing(name))
        row = class_metrics(resize_labels(slices, *truth.shape[1:]), truth, model.labels,
                            with_hd95, measure)
        rows.append({"case": name, **row})
    return rows, summarise(rows)


@torch.no_grad()
def volume_probabilities(model: nn.Module, volume: np.ndarray, window: tuple[int, ...],
                         overlap: tuple[float, ...] | None, runtime: Runtime) -> torch.Tensor:
    """Probabilities (heads, D, H, W) on the CPU of a whole volume (C, D, H, W) float32, by
    MONAI's sliding window of the training patch (`overlap` per axis, 0.5 by default),
    windows weighted alike (UA-MT averages its overlapping windows); a volume smaller than
    the window is padded with zeros."""
    from monai.inferers import sliding_window_inference

    was_training = model.training
    model.eval()
    try:
        x = torch.from_numpy(np.array(volume, np.float32))[None].to(runtime.device)
        with runtime.autocast():
            logits = sliding_window_inference(
                x, list(window), 1, lambda patch: model(patch).logits,
                overlap=list(overlap) if overlap else 0.5, mode="constant")
        return model.labels.probabilities(logits.float())[0].cpu()
    finally:
        model.train(was_training)


def predict_volume(model: nn.Module, volume: np.ndarray, window: tuple[int, ...],
                   overlap: tuple[float, ...] | None, runtime: Runtime,
                   shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The label map (D, H, W) uint8 of a whole volume (`volume_probabilities`), its
    probabilities first taken to `shape` (the volume's own grid, when it was resampled)."""
    probs = volume_probabilities(model, volume, window, overlap, runtime)
    if shape is not None:
        probs = to_shape(probs, shape)
    return model.labels.hard(probs[None])[0, 0].numpy().astype(np.uint8)


def evaluate_volumes(model: nn.Module, data: VolumeData, names: list[str], runtime: Runtime,
                     with_hd95: bool = True) -> tuple[list[dict], dict[str, dict[str, float]]]:
    """Per-volume metrics of a 3-D network: each whole volume by sliding window, scored in
    3-D (Dice, Jaccard, HD95 and ASD per class, in voxels and, with a spacing, mm), and in
    columns of their own (`dice_lcc`, `hd95_lcc`) the same after keeping each class's largest
    26-connected component, the post-processing BCP and AD-MT apply by default."""
    rows = []
    for name in names:
        i = data.names.index(name)
        truth = data.native(name)
        predicted = predict_volume(model, data.image(i), data.window, data.overlap, runtime,
                                   truth.shape)
        measure = functools.partial(volume_metrics, spacing=data.spacing(name))
        row = class_metrics(predicted, truth, model.labels, with_hd95, measure)
        kept = class_metrics(keep_largest_components(predicted), truth, model.labels,
                             with_hd95, measure)
        rows.append({"case": name, **row, "dice_lcc": kept["dice"],
                     **({"hd95_lcc": kept["hd95"]} if "hd95" in kept else {})})
    return rows, summarise(rows)


def write_per_image_csv(path: Path, rows: list[dict]) -> None:
    with atomic_path(Path(path)) as tmp, open(tmp, "w", newline="") as f:
        names = [m for m in rows[0] if m != "case"] if rows else list(METRICS)
        writer = csv.DictWriter(f, fieldnames=["case", *names])
        writer.writeheader()
        writer.writerows(rows)

