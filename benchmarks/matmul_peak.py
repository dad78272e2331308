"""The machine's practical peak: GFLOP/s of a large square matmul in fp32 and bf16 (a benchmark,
not a test). The reference for the training GFLOP/s in docs/performance.md.

    python benchmarks/matmul_peak.py --threads 1
    python benchmarks/matmul_peak.py --device cuda --size 8192 --repeats 20
"""

from __future__ import annotations

import argparse

import torch
from timing import median_seconds


def matmul_gflops(n: int, dtype: torch.dtype, repeats: int, device: torch.device) -> float:
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    return 2 * n**3 / median_seconds(lambda: a @ b, 3, device, warmup=2, inner=repeats) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        gflops = matmul_gflops(args.size, dtype, args.repeats, device)
        print(f"matmul {args.size}² {name}, {device}, {args.threads} threads: "
              f"{gflops:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
