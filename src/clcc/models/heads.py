"""Heads attached to the U-Net's decoder features.

`ProjectionHead` (CLCC, Sec. 2.1): convolutions whose kernel equals their stride, so each
output vector sees exactly one P×P block of the feature map and receptive fields never overlap
across blocks. A full image of n·P pixels gives an n×n×D map; a P×P patch gives one 1×1×D
vector; in 3-D the same with P1×P2×P3 blocks of a volume (strides per axis). As in the
authors' implementation, each convolution is followed by BatchNorm and ReLU (so the vectors
are non-negative), channels C → 64 → 64 → D.
"""

from __future__ import annotations

import torch
from torch import nn

from clcc.models.layers import layers


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
    def __init__(self, in_channels: int, patch: int | tuple[int, ...], dim: int = 128,
                 hidden: int = 64, spatial_dims: int = 2) -> None:
        """`patch`: a square patch's side, or a block's sides (one per spatial axis)."""
        sides = (patch,) * spatial_dims if isinstance(patch, int) else tuple(patch)
        per_axis = [derive_strides(side) for side in sides]
        strides = [s[0] if len(set(s)) == 1 else s for s in zip(*per_axis, strict=True)]
        ops = layers(spatial_dims)
        channels = [in_channels, hidden, hidden, dim]
        blocks: list[nn.Module] = []
        for c_in, c_out, s in zip(channels[:-1], channels[1:], strides, strict=True):
            blocks += [ops.conv(c_in, c_out, s, stride=s, bias=False), ops.norm(c_out),
                       nn.ReLU(inplace=True)]
        super().__init__(*blocks)
        self.patch = patch

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B,C,h·P,w·P) → (B,D,h,w); (B,C,d·P1,h·P2,w·P3) → (B,D,d,h,w)."""
        return super().forward(features)
