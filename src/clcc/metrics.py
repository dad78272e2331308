"""Per-image segmentation metrics on binary masks (prediction = probability > 0.5).

Conventions for empty masks (P = prediction, G = ground truth, both binary):
- Dice, IoU: 1 when both are empty, else 2|P∩G|/(|P|+|G|) and |P∩G|/|P∪G|.
- Precision |P∩G|/|P|: when P is empty, 1 if G is empty too, else 0.
- Recall |P∩G|/|G|: when G is empty, 1 if P is empty too, else 0.
- MAE: mean |P − G| over pixels (the paper reports it ×100).
- HD95 (pixels; MONAI's symmetric 95th-percentile Hausdorff distance): 0 when both are empty;
  when exactly one is empty, the image diagonal (the largest distance possible), so a missed
  lesion is penalised instead of silently dropped from the mean.

Dice and IoU are the *foreground* Dice and IoU of each image averaged over images, which is what
the CLCC authors' code calls Dice and mIoU.

Volumes (`volume_metrics`) are scored as the field scores ACDC (SSL4MIS's `test_2D_fully.py`,
BCP's `test_ACDC.py`: medpy's `dc`, `jc`, `hd95`, `asd` of each class on the whole 3-D
volume): Dice, IoU (Jaccard), HD95 (95th percentile of the surface distances both ways) and
ASD (mean distance from the predicted surface to the true one, medpy's direction), in voxels
as the papers report them, and in mm where the spacing is known (`hd95_mm`, `asd_mm`).
Surfaces are the voxels a face-connected erosion removes, as medpy finds them. A class missed
(or predicted where there is none) has Dice and IoU 0 and distances equal to the volume's
diagonal; both empty: Dice 1, distances 0. SSL4MIS's validation scores a miss as Dice 0 and
HD95 0, which makes a miss look better than a poor hit; its test script fails on one.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
from scipy import ndimage

from clcc.labels import LabelSpace

METRICS = ("dice", "iou", "mae", "precision", "recall", "hd95")


def _ratio(num: float, den: float, both_empty: float) -> float:
    return both_empty if den == 0 else num / den


def hd95(pred: np.ndarray, target: np.ndarray) -> float:
    """Symmetric 95th-percentile Hausdorff distance in pixels, with the conventions above."""
    if not pred.any() and not target.any():
        return 0.0
    if not pred.any() or not target.any():
        return math.hypot(*pred.shape)
    from monai.metrics import compute_hausdorff_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MONAI's own internal deprecation
        value = compute_hausdorff_distance(
            torch.from_numpy(pred)[None, None].float(),
            torch.from_numpy(target)[None, None].float(),
            include_background=True,
            percentile=95,
        )
    return float(value.item())


def image_metrics(
    pred: np.ndarray, target: np.ndarray, with_hd95: bool = True
) -> dict[str, float]:
    """Metrics of one image; `pred` and `target` are boolean (H, W) arrays. HD95 is the slow
    one, so validation during training leaves it out."""
    pred = np.asarray(pred, bool)
    target = np.asarray(target, bool)
    tp = float(np.logical_and(pred, target).sum())
    n_pred, n_true = float(pred.sum()), float(target.sum())
    union = n_pred + n_true - tp
    row = {
        "dice": _ratio(2 * tp, n_pred + n_true, 1.0),
        "iou": _ratio(tp, union, 1.0),
        "mae": float(np.mean(pred != target)),
        "precision": _ratio(tp, n_pred, 1.0 if n_true == 0 else 0.0),
        "recall": _ratio(tp, n_true, 1.0 if n_pred == 0 else 0.0),
    }
    if with_hd95:
        row["hd95"] = hd95(pred, target)
    return row


def surface_distances(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...] | None = None
                      ) -> np.ndarray:
    """Distance of every surface voxel of boolean `a` to the surface of `b` (both non-empty)."""
    structure = ndimage.generate_binary_structure(a.ndim, 1)
    a_surface = a ^ ndimage.binary_erosion(a, structure, iterations=1)
    b_surface = b ^ ndimage.binary_erosion(b, structure, iterations=1)
    return ndimage.distance_transform_edt(~b_surface, sampling=spacing)[a_surface]


def volume_metrics(pred: np.ndarray, target: np.ndarray, with_hd95: bool = True,
                   spacing: tuple[float, float, float] | None = None) -> dict[str, float]:
    """Dice, IoU, and with `with_hd95` HD95 and ASD (voxels; also mm with `spacing`) of one
    class in one volume; `pred` and `target` boolean (D, H, W)."""
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    tp = float(np.logical_and(pred, target).sum())
    n_pred, n_true = float(pred.sum()), float(target.sum())
    row = {"dice": _ratio(2 * tp, n_pred + n_true, 1.0),
           "iou": _ratio(tp, n_pred + n_true - tp, 1.0)}
    if not with_hd95:
        return row
    units = {"": None, **({"_mm": tuple(spacing)} if spacing else {})}
    for suffix, sampling in units.items():
        scale = np.asarray(sampling or (1.0,) * pred.ndim)
        if not pred.any() or not target.any():
            far = 0.0 if not pred.any() and not target.any() else float(
                np.linalg.norm(np.asarray(pred.shape) * scale))
            row[f"hd95{suffix}"], row[f"asd{suffix}"] = far, far
            continue
        there = surface_distances(pred, target, sampling)
        back = surface_distances(target, pred, sampling)
        row[f"hd95{suffix}"] = float(np.percentile(np.hstack([there, back]), 95))
        row[f"asd{suffix}"] = float(there.mean())
    return row


def class_metrics(pred: np.ndarray, target: np.ndarray, labels: LabelSpace,
                  with_hd95: bool = True, measure: Callable[..., dict[str, float]] = image_metrics
                  ) -> dict[str, float]:
    """Metrics of one image (or volume, with `measure` = `volume_metrics`) from label maps:
    each foreground class against the rest, and their mean over the foreground classes under
    the plain names (`dice` is the mean foreground Dice, so binary tables read as before). A
    task of several classes also gets a column per class, `dice_<class>`."""
    per = {name: measure(pred == value, target == value, with_hd95)
           for value, name in enumerate(labels.names, start=1)}
    row = {m: float(np.mean([p[m] for p in per.values()])) for m in next(iter(per.values()))}
    if len(per) > 1:
        row.update({f"{m}_{name}": v for name, p in per.items() for m, v in p.items()})
    return row


def summarise(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and (population) standard deviation over images of each metric present."""
    names = [k for k in rows[0] if k != "case"] if rows else []
    return {
        name: {
            "mean": float(np.mean([r[name] for r in rows])),
            "std": float(np.std([r[name] for r in rows])),
        }
        for name in names
    }


def keep_largest_components(label_map: np.ndarray) -> np.ndarray:
    """Each foreground class reduced to its largest connected component, connectivity full
    (8 in 2-D, as BCP's skimage `label`; 26 in 3-D, as BCP's and AD-MT's LA tests); the rest
    becomes background. A label map (H, W) or (D, H, W) of class values in and out."""
    label_map = np.asarray(label_map)
    out = np.zeros_like(label_map)
    structure = np.ones((3,) * label_map.ndim)
    for value in np.unique(label_map[label_map > 0]):
        components, count = ndimage.label(label_map == value, structure=structure)
        if count:
            sizes = np.bincount(components.ravel())[1:]
            out[components == 1 + int(np.argmax(sizes))] = value
    return out
