"""Three U-Nets of 5 levels, widths 16…256 (a quarter of the classic 64…1024), as an
`Architecture` each:

- `authors`: the CLCC authors' network (`utils/models/utils_unet.py`, `unet2d.py` of
  ShinkaiZ/CLCC-semi), which the paper's numbers come from: encoder blocks conv 3×3 (with bias)
  → BatchNorm → ReLU, twice; decoder blocks upsample with ConvTranspose2d(kernel 4, stride 2,
  padding 1) and then conv 3×3 → ReLU twice, **no BatchNorm in the decoder**; a 1×1 head;
  Kaiming-normal (fan-in) convolutions, BatchNorm weights N(1, 0.02) and biases 0. 2.47 M
  parameters.
- `ssl4mis`: SSL4MIS's 2-D `UNet` (`code/networks/unet.py` of HiLab-git/SSL4MIS; UniMatch's
  medical `model/unet.py` is the same network), which its baselines, UniMatch and BCP train:
  conv 3×3 (with bias) → BatchNorm → LeakyReLU(0.01), twice, in encoder and decoder alike; the
  decoder upsamples with a 1×1 convolution then bilinear ×2 (`align_corners=True`: its
  `UpBlock`'s default, which its decoder never overrides); a **3×3** output convolution;
  PyTorch's default initialisation. 1.81 M parameters with 4 classes. `from_ssl4mis` maps its
  state-dict keys onto these.
- `ssl4mis-v1`: what clcc called `ssl4mis` before it matched SSL4MIS's file (no convolution
  biases, ConvTranspose2d(kernel 2) upsampling, 1×1 head; 1.94 M parameters): kept so that
  checkpoints made with it still load (`saved_architecture` recognises them).

Encoder dropout (`dropout`, per level) sits between the two convolutions of a block, as in
SSL4MIS, in any architecture. The forward pass returns named outputs, so a method asks for
what it needs (the CLCC projection head needs the last decoder feature map) instead of
unpacking tuples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from clcc.labels import BINARY, LabelSpace
from clcc.models.layers import CONVOLUTIONS, NORMS, check_sides, layers


@dataclass
class SegOutput:
    """`logits` (B,heads,H,W) (`LabelSpace.heads`: 1 for a binary task, else C); `features`,
    the last decoder map (B,C0,H,W); `aux`, extra logits."""

    logits: torch.Tensor
    features: torch.Tensor
    aux: list[torch.Tensor] = field(default_factory=list)


@dataclass(frozen=True)
class Architecture:
    """What distinguishes one U-Net of this family from another."""

    activation: Callable[[], nn.Module]
    conv_bias: bool
    decoder_norm: bool
    up_kernel: int  # transposed convolution 2 (no padding) or 4 (padding 1); 0: 1×1 conv +
    # bilinear ×2 (SSL4MIS). All exactly double the size
    kaiming_init: bool
    head_kernel: int = 1


ARCHITECTURES = {
    "authors": Architecture(lambda: nn.ReLU(inplace=True), conv_bias=True, decoder_norm=False,
                            up_kernel=4, kaiming_init=True),
    "ssl4mis": Architecture(lambda: nn.LeakyReLU(0.01, inplace=True), conv_bias=True,
                            decoder_norm=True, up_kernel=0, kaiming_init=False, head_kernel=3),
    "ssl4mis-v1": Architecture(lambda: nn.LeakyReLU(0.01, inplace=True), conv_bias=False,
                               decoder_norm=True, up_kernel=2, kaiming_init=False),
}

SSL4MIS_DROPOUT = (0.05, 0.1, 0.2, 0.3, 0.5)
"""Per-level encoder dropout of SSL4MIS's 2-D U-Net, which its baselines train with."""


def saved_architecture(name: str, weights: dict[str, torch.Tensor]) -> str:
    """The architecture that made `weights`: a checkpoint saved as `ssl4mis` before that name
    matched SSL4MIS's file has a 1×1 head, which today's `ssl4mis` has not: `ssl4mis-v1`."""
    head = weights.get("head.weight")
    if name == "ssl4mis" and head is not None and tuple(head.shape[-2:]) == (1, 1):
        return "ssl4mis-v1"
    return name


class ConvBlock(nn.Sequential):
    """Two 3×3 (3×3×3) convolutions, each followed by BatchNorm (when `norm`) and the
    activation, with optional element-wise dropout between them (as SSL4MIS places it)."""

    def __init__(self, c_in: int, c_out: int, arch: Architecture, norm: bool = True,
                 dropout: float = 0.0, spatial_dims: int = 2) -> None:
        ops = layers(spatial_dims)

        def conv(a: int) -> list[nn.Module]:
            block = [ops.conv(a, c_out, 3, padding=1, bias=arch.conv_bias)]
            return block + ([ops.norm(c_out)] if norm else []) + [arch.activation()]

        middle = nn.Dropout(dropout) if dropout > 0 else nn.Identity()  # keeps layer indices
        super().__init__(*conv(c_in), middle, *conv(c_out))


def upsampler(c_in: int, c_out: int, kernel: int, spatial_dims: int = 2) -> nn.Module:
    """×2 to `c_out` channels: a transposed convolution of `kernel`, or (kernel 0) SSL4MIS's
    1×1 convolution followed by (bi/tri)linear interpolation with aligned corners."""
    ops = layers(spatial_dims)
    if kernel == 0:
        return nn.Sequential(ops.conv(c_in, c_out, 1), nn.Upsample(
            scale_factor=2, mode=ops.interpolation, align_corners=True))
    return ops.transposed(c_in, c_out, kernel_size=kernel, stride=2, padding=(kernel - 2) // 2)


class UpBlock(nn.Module):
    """Upsampling ×2, concatenation with the skip connection, ConvBlock."""

    def __init__(self, c_in: int, c_skip: int, c_out: int, arch: Architecture,
                 spatial_dims: int = 2) -> None:
        super().__init__()
        self.up = upsampler(c_in, c_skip, arch.up_kernel, spatial_dims)
        self.conv = ConvBlock(2 * c_skip, c_out, arch, norm=arch.decoder_norm,
                              spatial_dims=spatial_dims)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


def authors_init(module: nn.Module) -> None:
    """Kaiming-normal (fan-in, ReLU gain) weights of every convolution, transposed ones
    included, and N(1, 0.02) / 0 for BatchNorm, as the authors' `init_weights(..., 'kaiming')`;
    convolution biases keep PyTorch's default. (The authors' 1×1 head keeps PyTorch's default
    too: it is re-initialised after this by the caller.)"""
    for m in module.modules():
        if isinstance(m, CONVOLUTIONS):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
        elif isinstance(m, NORMS):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class UNet(nn.Module):
    """Encoder of len(widths) levels (each halves the size), symmetric decoder, on images
    (`spatial_dims` 2: (B, C, H, W)) or volumes (3: (B, C, D, H, W)).

    Input sides must be divisible by 2**(levels-1). `dropout` is per encoder level (none by
    default; UAMT's stochastic passes and URPC's perturbations add their own noise).
    """

    extra_prefixes: tuple[str, ...] = ()  # weights a plain U-Net does not have
    ct: tuple[float, ...] | None = None  # the CT statistics its training volumes were
    # normalised with (set by `load_trained_model`), for new scans

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 32, 64, 128, 256),
        dropout: Sequence[float] | None = None,
        architecture: str = "authors",
        labels: LabelSpace = BINARY,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        ops = layers(spatial_dims)
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown U-Net architecture {architecture!r}; choose "
                             f"{', '.join(ARCHITECTURES)}")
        arch = ARCHITECTURES[architecture]
        widths = list(widths)
        dropout = list(dropout) if dropout is not None else [0.0] * len(widths)
        if len(dropout) != len(widths):
            raise ValueError(f"dropout {dropout} needs one value per level ({len(widths)})")
        self.widths, self.architecture, self.labels = widths, architecture, labels
        self.in_channels, self.spatial_dims = in_channels, spatial_dims
        self.encoder = nn.ModuleList()
        c_prev = in_channels
        for width, p in zip(widths, dropout, strict=True):
            self.encoder.append(ConvBlock(c_prev, width, arch, dropout=p,
                                          spatial_dims=spatial_dims))
            c_prev = width
        self.pool = ops.pool(2)
        self.decoder = nn.ModuleList(
            UpBlock(widths[i + 1], widths[i], widths[i], arch, spatial_dims)
            for i in reversed(range(len(widths) - 1))
        )
        if arch.kaiming_init:
            authors_init(self)
        self.head = ops.conv(widths[0], labels.heads, kernel_size=arch.head_kernel,
                             padding=arch.head_kernel // 2)

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
        check_sides(x, self.divisor, f"a {len(self.widths)}-level U-Net")
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
        peak = attention.flatten(1).amax(dim=1).view(-1, *[1] * (x.dim() - 1))
        threshold = peak * float(torch.empty(()).uniform_(0.7, 0.9))
        return x * (attention < threshold).to(x.dtype)


class PyramidUNet(UNet):
    """U-Net with auxiliary 3×3 heads on the three coarser decoder scales (URPC, Luo et al.
    2021), upsampled to the input size (nearest, as SSL4MIS's `interpolate(x, shape)`). In
    training each auxiliary branch sees a perturbed feature map: element-wise dropout 0.5,
    feature dropout, feature noise (coarsest to finest)."""

    extra_prefixes = ("aux_heads.", "perturb.")

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64, 128, 256),
                 dropout: Sequence[float] | None = None, architecture: str = "authors",
                 labels: LabelSpace = BINARY, spatial_dims: int = 2) -> None:
        super().__init__(in_channels, widths, dropout, architecture, labels, spatial_dims)
        if len(self.widths) < 5:
            raise ValueError("PyramidUNet needs at least 5 levels for three auxiliary scales")
        decoder_widths = list(reversed(self.widths[:-1]))  # coarsest to finest
        self.aux_heads = nn.ModuleList(layers(spatial_dims).conv(w, labels.heads, 3, padding=1)
                                       for w in decoder_widths[-4:-1])
        self.perturb = nn.ModuleList([nn.Dropout(0.5), FeatureDropout(), FeatureNoise()])

    def forward(self, x: torch.Tensor) -> SegOutput:
        maps = self.decode(self.encode(x))
        features = maps[-1]
        aux = []
        for head, perturb, fmap in zip(self.aux_heads, self.perturb, maps[-4:-1], strict=True):
            logits = head(perturb(fmap) if self.training else fmap)
            aux.append(F.interpolate(logits, size=x.shape[2:], mode="nearest"))
        return SegOutput(logits=self.head(features), features=features, aux=aux)
