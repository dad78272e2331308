"""BatchNorm helpers shared by methods that run extra forward passes (patches, teachers) and by
the re-estimation of running statistics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def bn_momentum(model: nn.Module, momentum: float | None) -> Iterator[list[nn.Module]]:
    """Every BatchNorm layer of `model` with this momentum (0: running statistics stay as they
    are; None: cumulative average), restored afterwards. Yields the layers."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in layers]
    for m in layers:
        m.momentum = momentum
    try:
        yield layers
    finally:
        for m, value in zip(layers, saved, strict=True):
            m.momentum = value


def frozen_bn_statistics(model: nn.Module) -> contextlib.AbstractContextManager:
    """BatchNorm layers keep normalising with batch statistics but update no running stats."""
    return bn_momentum(model, 0.0)
