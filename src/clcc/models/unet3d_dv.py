"""SSL4MIS's 3-D U-Net with deep supervision (`code/networks/unet_3D_dv_semi.py`, after Oktay
et al.'s Attention-Gated-Networks): the network its 3-D URPC script
(`train_uncertainty_rectified_pyramid_consistency_3D.py`) trains, `model.name: unet3d-dv`.

Five levels of two convolutions 3×3×3 (biased) → InstanceNorm (no affine, no running
statistics) → ReLU, 16…256 channels (its 64…1024 over `feature_scale` 4); max pooling down; up,
trilinear ×2, the skip concatenated in front, two convolutions; channel dropout 0.5, 0.3, 0.2,
0.1 after the four decoder levels, coarsest first (training only; SSL4MIS's only perturbation
in 3-D, where its 2-D `UNet_URPC` perturbs each auxiliary branch apart); a 1×1×1 head on
each decoder level, the coarser three upsampled trilinearly ×8, ×4, ×2 to the input.
Kaiming-normal (fan-in) convolution weights. Module names are SSL4MIS's, so its state dicts
load as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from clcc.labels import BINARY, LabelSpace
from clcc.models.layers import check_sides
from clcc.models.unet import SSL4MIS_DROPOUT, SegOutput


class _Convs(nn.Module):
    """Two convolutions 3×3×3 → InstanceNorm → ReLU (SSL4MIS's `UnetConv3`)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv3d(c_in, c_out, 3, padding=1),
                                   nn.InstanceNorm3d(c_out), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(nn.Conv3d(c_out, c_out, 3, padding=1),
                                   nn.InstanceNorm3d(c_out), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class _Up(nn.Module):
    """Trilinear ×2, the skip concatenated in front, `_Convs` (SSL4MIS's `UnetUp3_CT`)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = _Convs(c_in + c_out, c_out)
        self.up = nn.Upsample(scale_factor=2, mode="trilinear")

    def forward(self, skip: torch.Tensor, below: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(below)], 1))


class _Supervision(nn.Module):
    """A 1×1×1 head, upsampled trilinearly to the input (SSL4MIS's `UnetDsv3`)."""

    def __init__(self, c_in: int, c_out: int, scale: int) -> None:
        super().__init__()
        self.dsv = nn.Sequential(nn.Conv3d(c_in, c_out, 1),
                                 nn.Upsample(scale_factor=scale, mode="trilinear"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dsv(x)


class DeepSupervisedUNet3D(nn.Module):
    """(B, C, D, H, W) → `SegOutput`: the finest head's logits, the three coarser heads' as
    `aux` (coarsest first) and the last decoder map, before the finest head's dropout, as
    `features` (as the V-Net's: CLCC's projection reads the map, not a copy with channels
    dropped). Sides must be divisible by 16 (where SSL4MIS's padding of a skip is a no-op).
    `dropout` gives a rate per level, as `model.dropout` does for the U-Nets: the decoder level
    that comes up from level L + 1 drops channels at its rate, so SSL4MIS's five (0.05 … 0.5,
    the default) give its 3-D network's 0.5, 0.3, 0.2, 0.1."""

    extra_prefixes: tuple[str, ...] = ()
    ct: tuple[float, ...] | None = None  # set by `load_trained_model`, as the V-Net's
    divisor = 16
    spatial_dims = 3

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64, 128, 256),
                 dropout: Sequence[float] | None = None, architecture: str = "unet3d-dv",
                 labels: LabelSpace = BINARY, spatial_dims: int = 3) -> None:
        super().__init__()
        if spatial_dims != 3 or len(widths) != 5:
            raise ValueError("unet3d-dv is SSL4MIS's 3-D network of five levels "
                             "(model.spatial_dims 3, five model.widths)")
        w = self.widths = [int(c) for c in widths]
        self.in_channels, self.labels, self.architecture = in_channels, labels, architecture
        rates = list(dropout) if dropout is not None else list(SSL4MIS_DROPOUT)
        for i in range(4):
            setattr(self, f"conv{i + 1}", _Convs(in_channels if i == 0 else w[i - 1], w[i]))
            setattr(self, f"maxpool{i + 1}", nn.MaxPool3d(2))
        self.center = _Convs(w[3], w[4])
        for i in range(4, 0, -1):
            setattr(self, f"up_concat{i}", _Up(w[i], w[i - 1]))
        for i, scale in ((4, 8), (3, 4), (2, 2)):
            setattr(self, f"dsv{i}", _Supervision(w[i - 1], labels.heads, scale))
        self.dsv1 = nn.Conv3d(w[0], labels.heads, 1)
        for k in range(1, 5):  # dropout1 leaves up_concat4 (level 3), from level 4
            setattr(self, f"dropout{k}", nn.Dropout3d(rates[5 - k]))
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")

    def plain_state_dict(self) -> dict[str, torch.Tensor]:
        return self.state_dict()

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each level's map, finest first; the last is the centre's."""
        maps = []
        for i in range(1, 5):
            x = getattr(self, f"conv{i}")(x if i == 1 else getattr(self, f"maxpool{i - 1}")(x))
            maps.append(x)
        return [*maps, self.center(self.maxpool4(x))]

    def decode(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Decoder maps from coarsest to finest, each but the finest after its dropout (the
        finest's belongs to the head)."""
        x, out = maps[-1], []
        for k, i in enumerate(range(4, 0, -1), start=1):
            x = getattr(self, f"up_concat{i}")(maps[i - 1], x)
            x = getattr(self, f"dropout{k}")(x) if i > 1 else x
            out.append(x)
        return out

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """The finest head behind its channel dropout."""
        return self.dsv1(self.dropout4(features))

    def forward(self, x: torch.Tensor) -> SegOutput:
        check_sides(x, self.divisor, "unet3d-dv")
        maps = self.decode(self.encode(x))
        aux = [self.dsv4(maps[0]), self.dsv3(maps[1]), self.dsv2(maps[2])]
        return SegOutput(logits=self.head(maps[3]), features=maps[3], aux=aux)
