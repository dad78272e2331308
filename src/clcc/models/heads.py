"""Heads attached to the U-Net's decoder features.

`ProjectionHead` (CLCC, Sec. 2.1): convolutions whose kernel equals their stride, so each
output vector sees exactly one P×P block of the feature map and receptive fields never overlap
across blocks. A full image of n·P pixels gives an n×n×D map; a P×P patch gives one 1×1×D
vector. As in the authors' implementation, each convolution is followed by BatchNorm and ReLU
(so the vectors are non-negative), channels C → 64 → 64 → D.
"""

from __future__ import annotations

import torch
from torch import nn


def derive_strides(patch: int, layers: int = 3) -> list[int]:
    """Split `patch` into `layers` integer factors, as equal as possible (64 → 4, 4, 4;
    32 → 4, 4, 2): the strides whose product maps one patch block to one vector."""
    if patch < 1:
        raise ValueError(f"patch size must be positive, got {patch}")
    primes, rest, p = [], patch, 2
    while rest > 1:
        while rest % p == 0:
            primes.append(p)
            rest //= p
        p += 1
    strides = [1] * layers
    for prime in sorted(primes, reverse=True):
        strides[strides.index(min(strides))] *= prime
    return sorted(strides, reverse=True)


class ProjectionHead(nn.Sequential):
    def __init__(self, in_channels: int, patch: int, dim: int = 128, hidden: int = 64) -> None:
        strides = derive_strides(patch)
        channels = [in_channels, hidden, hidden, dim]
        layers: list[nn.Module] = []
        for c_in, c_out, s in zip(channels[:-1], channels[1:], strides, strict=True):
            layers += [nn.Conv2d(c_in, c_out, s, stride=s, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
        super().__init__(*layers)
        self.patch = patch

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B,C,h·P,w·P) → (B,D,h,w)."""
        return super().forward(features)
