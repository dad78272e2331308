"""Device and precision choices, made once (device-agnostic: no `.cuda()` anywhere)."""

from __future__ import annotations

import contextlib
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clcc import __version__
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


def environment(device: torch.device) -> dict[str, Any]:
    """What made a result, for its `results.json`: a table is only comparable to another when
    the software and the hardware behind both are known."""
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {
        "clcc": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "device": device.type, "hardware": hardware, "threads": torch.get_num_threads(),
    }


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one (Linux), else what `platform` says."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
