"""The machine's practical peak, measured the way a training step computes: the best GFLOP/s of
large square matmuls (several sizes) and of 3×3 convolutions in channels-last layout (oneDNN on
a CPU) at the widths and sizes of the 16…256 U-Net, in fp32 and bf16 (a benchmark, not a test).
The reference for the training GFLOP/s in docs/performance.md.

A single 2048² matmul is not a peak: on an AMD EPYC with one thread, the CLCC step ran at 101 –
130 % of it, because oneDNN's convolutions there beat that one matmul size. The best of all the
kernels below is what a step's fraction is measured against.

    python benchmarks/matmul_peak.py --threads 1
    python benchmarks/matmul_peak.py --device cuda --repeats 20
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from timing import median_seconds

MATMUL_SIZES = (1024, 2048, 4096)
CONVOLUTIONS = ((16, 256), (32, 128), (64, 64), (128, 32), (256, 16))  # (channels, side)


def matmul_gflops(n: int, dtype: torch.dtype, repeats: int, device: torch.device) -> float:
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    return 2 * n**3 / median_seconds(lambda: a @ b, 3, device, warmup=2, inner=repeats) / 1e9


def conv_gflops(channels: int, side: int, dtype: torch.dtype, repeats: int,
                device: torch.device, batch: int = 8) -> float:
    """A 3×3 same-padded convolution, channels → channels, on (batch, channels, side, side)
    in channels-last layout: 2·B·C_out·H·W·C_in·9 FLOPs."""
    x = torch.randn(batch, channels, side, side, dtype=dtype, device=device).to(
        memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3, dtype=dtype, device=device).to(
        memory_format=torch.channels_last)
    flops = 2 * batch * channels * side * side * channels * 9
    return flops / median_seconds(lambda: F.conv2d(x, w, padding=1), 3, device, warmup=2,
                                  inner=repeats) / 1e9


def practical_peak(dtype: torch.dtype, device: torch.device, repeats: int = 5
                   ) -> tuple[float, dict[str, float]]:
    """(the best GFLOP/s, every kernel's GFLOP/s by name)."""
    sizes = (*MATMUL_SIZES, 8192) if device.type == "cuda" else MATMUL_SIZES
    measured = {f"matmul {n}²": matmul_gflops(n, dtype, repeats, device) for n in sizes}
    measured.update({f"conv3x3 {c}ch {s}²": conv_gflops(c, s, dtype, repeats, device)
                     for c, s in CONVOLUTIONS})
    return max(measured.values()), measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        best, measured = practical_peak(dtype, device, args.repeats)
        for kernel, gflops in measured.items():
            print(f"{name} {kernel}: {gflops:.1f} GFLOP/s")
        print(f"{name} practical peak, {device}, {args.threads} threads: {best:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
