"""U-Net as in the CLCC authors' implementation: 5 levels, widths 16…256 (a quarter of the
classic 64…1024), batch norm, transposed-convolution upsampling, 1×1 segmentation head.

The forward pass returns named outputs, so a method asks for what it needs (the CLCC
projection head needs the last decoder feature map) instead of unpacking tuples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SegOutput:
    """`logits` (B,1,H,W); `features`, the last decoder map (B,C0,H,W); `aux`, extra logits."""

    logits: torch.Tensor
    features: torch.Tensor
    aux: list[torch.Tensor] = field(default_factory=list)


SSL4MIS_DROPOUT = (0.05, 0.1, 0.2, 0.3, 0.5)
"""Per-level encoder dropout of SSL4MIS's 2-D U-Net, which its baselines train with."""


class ConvBlock(nn.Sequential):
    """Two 3×3 convolutions with batch norm and LeakyReLU, then optional dropout."""

    def __init__(self, c_in: int, c_out: int, dropout: float = 0.0) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),  # element-wise, as SSL4MIS
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.LeakyReLU(0.01, inplace=True),
        )


class UpBlock(nn.Module):
    """Transposed convolution ×2, concatenation with the skip connection, ConvBlock."""

    def __init__(self, c_in: int, c_skip: int, c_out: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(c_in, c_skip, kernel_size=2, stride=2)
        self.conv = ConvBlock(2 * c_skip, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """Encoder of len(widths) levels (each halves the size), symmetric decoder.

    Input sides must be divisible by 2**(levels-1). `dropout` is per encoder level (none by
    default; UAMT's stochastic passes and URPC's perturbations add their own noise).
    """

    extra_prefixes: tuple[str, ...] = ()  # weights a plain U-Net does not have

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 32, 64, 128, 256),
        dropout: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        widths = list(widths)
        dropout = list(dropout) if dropout is not None else [0.0] * len(widths)
        if len(dropout) != len(widths):
            raise ValueError(f"dropout {dropout} needs one value per level ({len(widths)})")
        self.widths = widths
        self.encoder = nn.ModuleList()
        c_prev = in_channels
        for width, p in zip(widths, dropout, strict=True):
            self.encoder.append(ConvBlock(c_prev, width, p))
            c_prev = width
        self.pool = nn.MaxPool2d(2)
        self.decoder = nn.ModuleList(
            UpBlock(widths[i + 1], widths[i], widths[i]) for i in reversed(range(len(widths) - 1))
        )
        self.head = nn.Conv2d(widths[0], 1, kernel_size=1)

    def plain_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a plain `UNet` of the same widths loads (what prediction needs)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(self.extra_prefixes)}

    @property
    def divisor(self) -> int:
        return 2 ** (len(self.widths) - 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        return skips

    def decode(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        """Decoder feature maps from coarsest to finest (the last is full resolution)."""
        x = skips[-1]
        maps = []
        for block, skip in zip(self.decoder, reversed(skips[:-1]), strict=True):
            x = block(x, skip)
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> SegOutput:
        if x.shape[-1] % self.divisor or x.shape[-2] % self.divisor:
            raise ValueError(
                f"input {tuple(x.shape[-2:])} must be divisible by {self.divisor} "
                f"for a {len(self.widths)}-level U-Net"
            )
        features = self.decode(self.encode(x))[-1]
        return SegOutput(logits=self.head(features), features=features)


class FeatureNoise(nn.Module):
    """Multiplicative uniform noise x·(1 + U(−r, r)), one draw per (channel, position) shared
    by the images of the batch, as SSL4MIS's `FeatureNoise` samples it (URPC)."""

    def __init__(self, ratio: float = 0.3) -> None:
        super().__init__()
        self.ratio = ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.empty_like(x[:1]).uniform_(-self.ratio, self.ratio)
        return x + x * noise


class FeatureDropout(nn.Module):
    """Drops the most activated positions: where the channel-mean activation reaches u × its
    per-image maximum, u ~ U(0.7, 0.9) drawn once per batch as in SSL4MIS (URPC)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = x.mean(dim=1, keepdim=True)
        peak = attention.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
        threshold = peak * float(torch.empty(()).uniform_(0.7, 0.9))
        return x * (attention < threshold).to(x.dtype)


class PyramidUNet(UNet):
    """U-Net with auxiliary 3×3 heads on the three coarser decoder scales (URPC, Luo et al.
    2021), upsampled to the input size (nearest, as SSL4MIS's `interpolate(x, shape)`). In
    training each auxiliary branch sees a perturbed feature map: element-wise dropout 0.5,
    feature dropout, feature noise (coarsest to finest)."""

    extra_prefixes = ("aux_heads.", "perturb.")

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64, 128, 256),
                 dropout: Sequence[float] | None = None) -> None:
        super().__init__(in_channels, widths, dropout)
        if len(self.widths) < 5:
            raise ValueError("PyramidUNet needs at least 5 levels for three auxiliary scales")
        decoder_widths = list(reversed(self.widths[:-1]))  # coarsest to finest
        self.aux_heads = nn.ModuleList(nn.Conv2d(w, 1, 3, padding=1)
                                       for w in decoder_widths[-4:-1])
        self.perturb = nn.ModuleList([nn.Dropout(0.5), FeatureDropout(), FeatureNoise()])

    def forward(self, x: torch.Tensor) -> SegOutput:
        maps = self.decode(self.encode(x))
        features = maps[-1]
        aux = []
        for head, perturb, fmap in zip(self.aux_heads, self.perturb, maps[-4:-1], strict=True):
            logits = head(perturb(fmap) if self.training else fmap)
            aux.append(F.interpolate(logits, size=x.shape[-2:], mode="nearest"))
        return SegOutput(logits=self.head(features), features=features, aux=aux)
