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

    @property
    def precision(self) -> str:
        """The name `train.precision` resolved to (`auto` is bf16 on a CPU with native bf16)."""
        return next(name for name, dtype in DTYPES.items() if dtype == self.dtype)

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
        device = torch.device(name)
    except RuntimeError as err:
        raise ClccError(f"unknown device {name!r}; choose auto, cpu, cuda, cuda:N or mps") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ClccError(f"device {name!r}: this torch build ({torch.__version__}) has no CUDA "
                        "device to use; pass --device cpu or auto")
    if device.type == "cuda" and device.index is not None and (
            device.index >= torch.cuda.device_count()):
        raise ClccError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None)
                                     and torch.backends.mps.is_available()):
        raise ClccError(f"device {name!r}: MPS is not available here; pass --device cpu")
    return device


NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True on CPUs with bf16 instructions (AMX or AVX512-BF16), where bf16 autocast is 2–3×
    faster than fp32; elsewhere it is emulated and about 2× slower (docs/performance.md)."""
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return any(flag in line.split() for flag in NATIVE_BF16_FLAGS)
    return False


def auto_precision(device: torch.device) -> str:
    """bf16 (fp16 on older GPUs) on CUDA and on CPUs with native bf16; fp32 elsewhere."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def make_runtime(device: str, precision: str, channels_last: bool = False) -> Runtime:
    dev = pick_device(device)
    if precision == "auto":
        precision = auto_precision(dev)
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
