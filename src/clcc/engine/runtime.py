"""Device and precision choices, made once (device-agnostic: no `.cuda()` anywhere)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from clcc.errors import ClccError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype  # autocast dtype; float32 means no autocast
    channels_last: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ClccError(f"unknown device {name!r}") from err


def make_runtime(device: str, precision: str, channels_last: bool = False) -> Runtime:
    dev = pick_device(device)
    if precision == "auto":
        if dev.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"
    if precision not in DTYPES:
        raise ClccError(f"unknown precision {precision!r}; choose auto, {', '.join(DTYPES)}")
    return Runtime(dev, DTYPES[precision], channels_last)
