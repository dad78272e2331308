"""Which network a method trains, by `model.name`: a U-Net architecture built as the method's
`model_class` (URPC's pyramid variant, or the plain U-Net), UA-MT's V-Net, or SSL4MIS's 3-D
U-Net with deep supervision. Every one takes images or volumes and answers with `SegOutput`,
and has `encode`, `decode` and `head` for the methods that perturb its features (UniMatch)."""

from __future__ import annotations

from torch import nn

from clcc.models.unet import UNet
from clcc.models.unet3d_dv import DeepSupervisedUNet3D
from clcc.models.vnet import VNet


def network(model_class: type[nn.Module], architecture: str, **args) -> nn.Module:
    """The network a method trains: UA-MT's V-Net for `vnet` (one head, so a method that needs
    auxiliary heads, URPC, refuses it), SSL4MIS's `unet_3D_dv_semi` for `unet3d-dv` (four
    heads: what URPC's 3-D script trains; the others read its finest), else `model_class` with
    that U-Net architecture."""
    if architecture == "unet3d-dv":
        return DeepSupervisedUNet3D(architecture=architecture, **args)
    if architecture != "vnet":
        return model_class(architecture=architecture, **args)
    if model_class is not UNet:
        raise ValueError(f"the V-Net has no {model_class.__name__}: this method needs its "
                         "auxiliary heads; set model.name=unet3d-dv (SSL4MIS's 3-D URPC "
                         "network) or a U-Net")
    return VNet(architecture=architecture, **args)
