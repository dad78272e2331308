"""UA-MT's V-Net (`code/networks/vnet.py` of yulequan/UA-MT, Milletari et al. 2016 as the LA
literature trains it: `VNet(n_channels=1, n_classes=2, n_filters=16, normalization='batchnorm',
has_dropout=True)`), the network of the field's 3-D left-atrium tables.

Five levels of 1, 2, 3, 3, 3 convolutions 3×3×3 → BatchNorm → ReLU (16, 32, 64, 128, 256
channels); a level is entered by a stride-2 convolution of kernel 2 and left, on the way up, by
a stride-2 transposed convolution of kernel 2, each followed by BatchNorm and ReLU; skip
connections are *added*; a 1×1×1 head. Channel dropout (Dropout3d, `dropout`, 0.5 in every UA-MT
training script) on the bottleneck and on the last decoder map (two modules of one rate, so
that a diagnostic can remove either), active in training only. No
residual connections (UA-MT's `ConvBlock`, not its unused `ResidualConvBlock`) and PyTorch's
default initialisation. Module names are UA-MT's, so its checkpoints load as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from clcc.labels import BINARY, LabelSpace
from clcc.models.layers import check_sides, layers
from clcc.models.unet import SegOutput

STAGES = (1, 2, 3, 3, 3)
"""Convolutions per level, top to bottom (the decoder mirrors the first four)."""
NAMES = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class _Stage(nn.Module):
    """`n` convolutions 3×3×3 → BatchNorm → ReLU (UA-MT's `ConvBlock`)."""

    def __init__(self, n: int, c_in: int, c_out: int, spatial_dims: int) -> None:
        super().__init__()
        ops, parts = layers(spatial_dims), []
        for i in range(n):
            parts += [ops.conv(c_in if i == 0 else c_out, c_out, 3, padding=1),
                      ops.norm(c_out), nn.ReLU(inplace=True)]
        self.conv = nn.Sequential(*parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Resample(nn.Module):
    """Stride-2 (transposed) convolution of kernel 2 → BatchNorm → ReLU (UA-MT's
    `DownsamplingConvBlock` / `UpsamplingDeconvBlock`)."""

    def __init__(self, c_in: int, c_out: int, up: bool, spatial_dims: int) -> None:
        super().__init__()
        ops = layers(spatial_dims)
        conv = ops.transposed if up else ops.conv
        self.conv = nn.Sequential(conv(c_in, c_out, 2, stride=2), ops.norm(c_out),
                                  nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class VNet(nn.Module):
    """(B, C, D, H, W) → `SegOutput` (logits, the last decoder map as features). Sides must be
    divisible by 16. `widths[0]` is UA-MT's `n_filters`; `dropout`'s last value (default 0.5)
    its Dropout3d probability.

    `features` is that map *before* the channel dropout that feeds the output convolution: the
    dropout belongs to the segmentation head, and a head reading the features (CLCC's
    projection) sees them as it does on the 2-D U-Nets, which have no dropout there, not a copy
    with half the channels dropped, other ones in each of CLCC's two passes."""

    extra_prefixes: tuple[str, ...] = ()
    ct: tuple[float, ...] | None = None  # the CT statistics its training volumes were
    # normalised with (set by `load_trained_model`), for new scans

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64, 128, 256),
                 dropout: Sequence[float] | None = None, architecture: str = "vnet",
                 labels: LabelSpace = BINARY, spatial_dims: int = 3) -> None:
        super().__init__()
        f = int(widths[0])
        self.widths = [f * 2**i for i in range(len(STAGES))]
        self.in_channels, self.labels, self.spatial_dims = in_channels, labels, spatial_dims
        self.architecture = architecture
        p = 0.5 if not dropout else float(list(dropout)[-1])
        w = self.widths
        for i, (name, n) in enumerate(zip(NAMES[:5], STAGES, strict=True)):
            setattr(self, f"block_{name}", _Stage(n, in_channels if i == 0 else w[i], w[i],
                                                  spatial_dims))
            if i < 4:
                setattr(self, f"block_{name}_dw", _Resample(w[i], w[i + 1], False, spatial_dims))
        for j, name in enumerate(NAMES[4:8]):  # five … eight go up: 256→128 … 32→16
            level = 4 - j
            if j > 0:
                setattr(self, f"block_{name}", _Stage(STAGES[level], w[level], w[level],
                                                      spatial_dims))
            setattr(self, f"block_{name}_up", _Resample(w[level], w[level - 1], True,
                                                        spatial_dims))
        self.block_nine = _Stage(1, w[0], w[0], spatial_dims)
        self.out_conv = layers(spatial_dims).conv(w[0], labels.heads, 1)
        drop = layers(spatial_dims).channel_dropout
        self.bottleneck_dropout = drop(p) if p > 0 else nn.Identity()
        self.head_dropout = drop(p) if p > 0 else nn.Identity()

    @property
    def divisor(self) -> int:
        return 2 ** (len(STAGES) - 1)

    def plain_state_dict(self) -> dict[str, torch.Tensor]:
        return self.state_dict()

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each level's map, finest first; the last is the bottleneck's."""
        maps = []
        for i, name in enumerate(NAMES[:5]):
            x = getattr(self, f"block_{name}")(x if i == 0 else
                                               getattr(self, f"block_{NAMES[i - 1]}_dw")(x))
            maps.append(x)
        return maps

    def decode(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Decoder maps from coarsest to finest (the last is full resolution), the bottleneck
        dropped first."""
        x, skips, out = self.bottleneck_dropout(maps[-1]), list(maps[:-1]), []
        for name in NAMES[4:8]:  # up, add the skip, convolve
            x = getattr(self, f"block_{name}_up")(x) + skips.pop()
            x = getattr(self, f"block_{NAMES[NAMES.index(name) + 1]}")(x)
            out.append(x)
        return out

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """The output convolution behind its channel dropout."""
        return self.out_conv(self.head_dropout(features))

    def forward(self, x: torch.Tensor) -> SegOutput:
        check_sides(x, self.divisor, "the V-Net")
        features = self.decode(self.encode(x))[-1]
        return SegOutput(logits=self.head(features), features=features)
