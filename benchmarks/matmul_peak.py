"""The machine's practical peak: GFLOP/s of a large square matmul in fp32 and bf16 (a benchmark,
not a test). The reference for the training GFLOP/s in docs/performance.md.

    python benchmarks/matmul_peak.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch


def matmul_gflops(n: int, dtype: torch.dtype, repeats: int) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        gflops = matmul_gflops(args.size, dtype, args.repeats)
        print(f"matmul {args.size}² {name}, {args.threads} threads: {gflops:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
