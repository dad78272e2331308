"""The layers of a network in 2-D or 3-D, chosen by `spatial_dims` as MONAI's networks take it:
one table, so that no network, head or method asks which dimension it is in."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Layers:
    conv: type[nn.Module]
    transposed: type[nn.Module]
    norm: type[nn.Module]
    pool: type[nn.Module]
    channel_dropout: type[nn.Module]
    interpolation: str  # the linear mode of `nn.Upsample` / `F.interpolate`


LAYERS = {
    2: Layers(nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.MaxPool2d, nn.Dropout2d,
              "bilinear"),
    3: Layers(nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d, nn.MaxPool3d, nn.Dropout3d,
              "trilinear"),
}

CONVOLUTIONS = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
NORMS = (nn.BatchNorm2d, nn.BatchNorm3d)


def layers(spatial_dims: int) -> Layers:
    if spatial_dims not in LAYERS:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    return LAYERS[spatial_dims]


def channel_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Whole channels zeroed with probability `p` (training mode), of an image batch
    (B, C, H, W) or a volume batch (B, C, D, H, W)."""
    return (F.dropout2d if x.dim() == 4 else F.dropout3d)(x, p, training=True)


def check_sides(x: torch.Tensor, divisor: int, network: str) -> None:
    """Refuse an input whose sides a network's poolings cannot halve down to its bottleneck."""
    if any(side % divisor for side in x.shape[2:]):
        raise ValueError(f"input {tuple(x.shape[2:])} must be divisible by {divisor} for "
                         f"{network}")
