"""Weights saved by the authors' own code, loaded into clcc's networks.

SSL4MIS's `UNet` and `UNet_URPC` (`code/networks/unet.py`; UniMatch's medical `model/unet.py`
is the same file) name their layers `encoder.in_conv.conv_conv.i`, `encoder.downK.maxpool_conv.1
.conv_conv.i`, `decoder.upK.conv1x1`, `decoder.upK.conv.conv_conv.i`, `decoder.out_conv` and
(URPC) `decoder.out_conv_dpK`; clcc's `ssl4mis` U-Net holds the same tensors, in the same order
inside a block, under `encoder.K.i`, `decoder.K.up.0`, `decoder.K.conv.i`, `head` and
`aux_heads.K`. The mapping lets clcc score a checkpoint the authors' script chose with its own
evaluation (`benchmarks/authors/`), and a test load a state dict of SSL4MIS's class.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from clcc.labels import LabelSpace
from clcc.models.unet import PyramidUNet, UNet

_RULES = (
    (r"^encoder\.in_conv\.conv_conv\.(\d+)\.", r"encoder.0.\1."),
    (r"^encoder\.down(\d)\.maxpool_conv\.1\.conv_conv\.(\d+)\.", r"encoder.\1.\2."),
    (r"^decoder\.up(\d)\.conv1x1\.", r"decoder.{up}.up.0."),
    (r"^decoder\.up(\d)\.conv\.conv_conv\.(\d+)\.", r"decoder.{up}.conv.\2."),
    (r"^decoder\.out_conv\.", "head."),
    (r"^decoder\.out_conv_dp(\d)\.", "aux_heads.{aux}."),
)
UNUSED = ("decoder.out_conv_dp4.",)
"""URPC's head on the bottleneck: built by SSL4MIS's `Decoder_URPC`, never used in its forward."""


def ssl4mis_key(key: str) -> str | None:
    """clcc's name of one SSL4MIS tensor (None for the unused bottleneck head)."""
    if key.startswith(UNUSED):
        return None
    for pattern, target in _RULES:
        match = re.match(pattern, key)
        if match:
            number = int(match.group(1)) if match.groups() else 0
            name = target.format(up=number - 1, aux=3 - number)  # up1…4 → 0…3; dp3…1 → 0…2
            return re.sub(pattern, name, key)
    raise KeyError(f"{key}: not a layer of SSL4MIS's UNet or UNet_URPC")


def from_ssl4mis(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An SSL4MIS / UniMatch state dict under clcc's names (a `module.` prefix of
    DistributedDataParallel removed)."""
    mapped = {}
    for key, value in state.items():
        name = ssl4mis_key(key.removeprefix("module."))
        if name is not None:
            mapped[name] = value
    return mapped


def load_authors_model(path: Path, labels: LabelSpace, channels: int = 1) -> UNet:
    """clcc's `ssl4mis` U-Net (its pyramid variant for URPC's weights) holding the weights of
    an SSL4MIS or UniMatch checkpoint: a bare state dict, or one under `state_dict` (SSL4MIS's
    `util.save_checkpoint`) or `model` (UniMatch)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(saved, dict) and isinstance(saved.get(key), dict):
            saved = saved[key]
    weights = from_ssl4mis(saved)
    cls = PyramidUNet if any(k.startswith("aux_heads.") for k in weights) else UNet
    model = cls(in_channels=channels, architecture="ssl4mis", labels=labels)
    model.load_state_dict(weights)
    return model.eval()
