"""The method interface and its registry.

A method owns the networks it trains (the U-Net, and for example an EMA teacher or a
projection head) as an `nn.Module`, so one `state_dict` holds everything to resume. The engine
does the rest: devices, precision, optimiser, schedule, evaluation, checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from clcc.errors import ClccError
from clcc.models.unet import UNet

Batch = dict[str, torch.Tensor]
Logs = dict[str, torch.Tensor]


class Method(nn.Module):
    """Base class. `batch` holds normalised float tensors on the device:
    "image" (B,3,H,W) and "mask" (B,1,H,W) labelled, "image_u" (B',3,H,W) unlabelled."""

    uses_unlabelled: ClassVar[bool] = True
    model_class: ClassVar[type[UNet]] = UNet  # URPC swaps in its pyramid variant
    has_unused_parameters: ClassVar[bool] = False  # some steps leave parameters unused (DDP)

    def __init__(self, model: UNet, image_size: int) -> None:
        super().__init__()
        self.model = model
        self.image_size = image_size

    def training_step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, Logs]:
        """Total loss to backpropagate and named (detached) parts; progress in [0, 1]."""
        raise NotImplementedError

    def forward(self, batch: Batch, progress: float) -> tuple[torch.Tensor, Logs]:
        """The training step, as `forward`, so DistributedDataParallel can wrap the method."""
        return self.training_step(batch, progress)

    def after_step(self, step: int) -> None:
        """Called after each optimiser step (EMA updates)."""

    def eval_model(self) -> nn.Module:
        """The network evaluated, checkpointed as `model` and used for prediction."""
        return self.model

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


def all_images(batch: Batch) -> torch.Tensor:
    """Labelled then unlabelled images in one tensor (the labelled ones come first)."""
    if "image_u" not in batch:
        return batch["image"]
    return torch.cat([batch["image"], batch["image_u"]])


METHODS: dict[str, type[Method]] = {}


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    def add(cls: type[Method]) -> type[Method]:
        METHODS[name] = cls
        return cls

    return add


def build_method(
    name: str, image_size: int, params: dict[str, Any] | None = None, **model_args: Any
) -> Method:
    """The registered method `name` with a fresh network of its `model_class` (built from
    `model_args`: widths, dropout), for square images of `image_size`."""
    if name not in METHODS:
        raise ClccError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    try:
        return cls(cls.model_class(**model_args), image_size, **(params or {}))
    except (TypeError, ValueError) as err:
        raise ClccError(f"method {name!r}: bad parameters {params} ({err})") from err
