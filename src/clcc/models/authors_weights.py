"""Weights saved by the authors' own code, loaded into clcc's networks.

SSL4MIS's `UNet` and `UNet_URPC` (`code/networks/unet.py`; UniMatch's medical `model/unet.py`
is the same file) name their layers `encoder.in_conv.conv_conv.i`, `encoder.downK.maxpool_conv.1
.conv_conv.i`, `decoder.upK.conv1x1`, `decoder.upK.conv.conv_conv.i`, `decoder.out_conv` and
(URPC) `decoder.out_conv_dpK`; clcc's `ssl4mis` U-Net holds the same tensors, in the same order
inside a block, under `encoder.K.i`, `decoder.K.up.0`, `decoder.K.conv.i`, `head` and
`aux_heads.K`. The mapping lets clcc score a checkpoint the authors' script chose with its own
evaluation (`benchmarks/authors/`), and a test load a state dict of SSL4MIS's class.

The CLCC authors' `BaseUnet2D` / `ProjUnet2D` (ShinkaiZ/CLCC-semi, `utils/models/unet2d.py`)
name their blocks `encoder.convK.convI.J` (K 1…4, `center`), `decoder.up_concatK.up` and
`.conv.convI.0`, and `final`; clcc's `authors` U-Net holds them as `encoder.K.J`,
`decoder.K.up` / `.conv.J` and `head`. Their projection heads (`proj_final`, `proj_center`)
are the method's, not the segmentation network's: dropped on loading.

UA-MT's `VNet` (`code/networks/vnet.py`) shares clcc's V-Net names; BCP's (`code/networks/
VNet.py`) holds the same layers under `encoder.` and `decoder.`, beside contrastive heads its LA
script never trains (dropped on loading). Two things differ:
their volumes are (x, y, z) where clcc's are (D, H, W) = (z, x, y) (the slice axis first), so
every 3-D kernel turns with them, and their head has two softmax channels where a binary clcc
model has one logit, which is their difference: softmax([a, b])₁ = sigmoid(b − a).

SSL4MIS's 3-D `unet_3D_dv_semi` (its 3-D URPC script saves its bare state dict) shares clcc's
`unet3d-dv` names; its volumes are (x, y, z) too (`dataloaders/brats2019.py` crops `(w, h, d)`),
and each of its four heads is folded as the V-Net's one.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from clcc.labels import LabelSpace
from clcc.models.unet import PyramidUNet, UNet
from clcc.models.unet3d_dv import DeepSupervisedUNet3D
from clcc.models.vnet import VNet

_RULES = (
    (r"^encoder\.in_conv\.conv_conv\.(\d+)\.", r"encoder.0.\1."),
    (r"^encoder\.down(\d)\.maxpool_conv\.1\.conv_conv\.(\d+)\.", r"encoder.\1.\2."),
    (r"^decoder\.up(\d)\.conv1x1\.", r"decoder.{up}.up.0."),
    (r"^decoder\.up(\d)\.conv\.conv_conv\.(\d+)\.", r"decoder.{up}.conv.\2."),
    (r"^decoder\.out_conv\.", "head."),
    (r"^decoder\.out_conv_dp(\d)\.", "aux_heads.{aux}."),
)
BCP_HEADS = ("projection_head.", "prediction_head.", "contrastive_class_selector_")
"""BCP's networks' contrastive heads (its `UNet_2d`, its LA `VNet`): built, never trained."""
UNUSED = ("decoder.out_conv_dp4.", *BCP_HEADS)
"""URPC's head on the bottleneck (built by SSL4MIS's `Decoder_URPC`, never used in its
forward) and BCP's heads."""


_CLCC_SEMI_RULES = (  # (pattern, clcc's prefix from its numbers): ConvBlock layers 0/1, 4/5
    (r"^encoder\.conv(\d)\.conv(\d)\.(\d)\.",
     lambda k, i, j: f"encoder.{k - 1}.{4 * (i - 1) + j}."),
    (r"^encoder\.center\.conv(\d)\.(\d)\.", lambda i, j: f"encoder.4.{4 * (i - 1) + j}."),
    (r"^decoder\.up_concat(\d)\.up\.", lambda k: f"decoder.{4 - k}.up."),
    (r"^decoder\.up_concat(\d)\.conv\.conv(\d)\.0\.",
     lambda k, i: f"decoder.{4 - k}.conv.{3 * (i - 1)}."),
    (r"^final\.", lambda: "head."),
)


def clcc_semi_key(key: str) -> str | None:
    """clcc's name of one CLCC-semi U-Net tensor (None for its projection heads)."""
    key = key.removeprefix("module.")
    if key.startswith(("proj_final.", "proj_center.")):
        return None
    for pattern, prefix in _CLCC_SEMI_RULES:
        match = re.match(pattern, key)
        if match:
            return prefix(*map(int, match.groups())) + key[match.end():]
    raise KeyError(f"{key}: not a layer of CLCC-semi's U-Net")


def ssl4mis_key(key: str) -> str | None:
    """clcc's name of one SSL4MIS / BCP tensor (None for the unused heads)."""
    if key.startswith(UNUSED):
        return None
    for pattern, target in _RULES:
        match = re.match(pattern, key)
        if match:
            number = int(match.group(1)) if match.groups() else 0
            name = target.format(up=number - 1, aux=3 - number)  # up1…4 → 0…3; dp3…1 → 0…2
            return re.sub(pattern, name, key)
    raise KeyError(f"{key}: not a layer of SSL4MIS's UNet or UNet_URPC")


NUMPY_SCALAR = [np.dtype, np.dtypes.Float32DType, np.dtypes.Float64DType,
                getattr(np, "_core", getattr(np, "core", None)).multiarray.scalar]
"""What a NumPy scalar saved beside the weights needs to load (CLCC-semi keeps its best
validation Dice as one): a plain value, allowed without unpickling anything else."""


def from_ssl4mis(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An SSL4MIS / UniMatch state dict under clcc's names (a `module.` prefix of
    DistributedDataParallel removed)."""
    mapped = {}
    for key, value in state.items():
        name = ssl4mis_key(key.removeprefix("module."))
        if name is not None:
            mapped[name] = value
    return mapped


def vnet_key(key: str) -> str | None:
    """clcc's name of one UA-MT or BCP V-Net tensor (None for BCP's unused heads)."""
    key = key.removeprefix("module.")
    if key.startswith(BCP_HEADS):
        return None
    return key.removeprefix("encoder.").removeprefix("decoder.")


def turned(state: dict[str, torch.Tensor], labels: LabelSpace, heads: tuple[str, ...]
           ) -> dict[str, torch.Tensor]:
    """A state dict of a network trained on (x, y, z) volumes as one on clcc's (z, x, y): each
    5-D kernel's axes turned with the volume; for a binary task each two-channel head (a
    prefix of `heads`) folded into one logit."""
    mapped = {key: value.permute(0, 1, 4, 2, 3).contiguous() if value.dim() == 5 else value
              for key, value in state.items()}
    if labels.binary:
        for head in heads:
            if mapped[f"{head}weight"].shape[0] == 2:
                for name in (f"{head}weight", f"{head}bias"):
                    mapped[name] = (mapped[name][1] - mapped[name][0])[None]
    return mapped


def from_uamt_vnet(state: dict[str, torch.Tensor], labels: LabelSpace
                   ) -> dict[str, torch.Tensor]:
    """A UA-MT / BCP V-Net state dict as clcc's V-Net on (z, x, y) volumes."""
    return turned({name: value for key, value in state.items()
                   if (name := vnet_key(key)) is not None}, labels, ("out_conv.",))


DV_HEADS = ("dsv1.", "dsv2.dsv.0.", "dsv3.dsv.0.", "dsv4.dsv.0.")
"""The four heads of SSL4MIS's `unet_3D_dv_semi`, finest first."""


def load_authors_model(path: Path, labels: LabelSpace, channels: int = 1
                       ) -> UNet | VNet | DeepSupervisedUNet3D:
    """clcc's `ssl4mis` U-Net (its pyramid variant for URPC's weights) holding the weights of
    an SSL4MIS, UniMatch or BCP (ACDC) checkpoint, its `authors` U-Net holding CLCC-semi's,
    its V-Net holding UA-MT's or BCP's (LA), or its `unet3d-dv` holding SSL4MIS's 3-D URPC
    network's: a bare state dict, or one under `state_dict` (SSL4MIS's `util.save_checkpoint`,
    CLCC-semi's), `model` (UniMatch) or `net` (BCP)."""
    with torch.serialization.safe_globals(NUMPY_SCALAR):
        saved = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "net"):
        if isinstance(saved, dict) and isinstance(saved.get(key), dict):
            saved = saved[key]
    saved = {k.removeprefix("module."): v for k, v in saved.items()}  # DataParallel's prefix
    if any((vnet_key(k) or "").startswith("block_one.") for k in saved):
        vnet = VNet(in_channels=channels, labels=labels)
        vnet.load_state_dict(from_uamt_vnet(saved, labels))
        return vnet.eval()
    if "dsv1.weight" in saved:
        unet3d = DeepSupervisedUNet3D(in_channels=channels, labels=labels)
        unet3d.load_state_dict(turned(saved, labels, DV_HEADS))
        return unet3d.eval()
    if any(k.startswith("encoder.conv1.conv1.") for k in saved):
        unet = UNet(in_channels=channels, architecture="authors", labels=labels)
        unet.load_state_dict({name: value for key, value in saved.items()
                              if (name := clcc_semi_key(key)) is not None})
        return unet.eval()
    weights = from_ssl4mis(saved)
    cls = PyramidUNet if any(k.startswith("aux_heads.") for k in weights) else UNet
    model = cls(in_channels=channels, architecture="ssl4mis", labels=labels)
    model.load_state_dict(weights)
    return model.eval()
