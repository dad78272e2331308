"""torchrun-native data parallelism: rank and world size from the environment, one process
per device, gradients averaged by DistributedDataParallel, rank 0 writes.

BatchNorm is *not* synchronised across ranks (no SyncBatchNorm): each rank normalises with the
statistics of its own 4 + 4 images, exactly as one process with that batch would, and the
running statistics are broadcast from rank 0 at every forward (DDP's `broadcast_buffers`), so
every rank evaluates and checkpoints the same model. The EMA teacher stays consistent for free:
it is updated from identical students with identical decays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the process group torchrun set up (no-op for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank)


def all_reduce_sum(values: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum of `values` over ranks (the tensor itself when not distributed)."""
    if d.enabled:
        values = values.clone()
        dist.all_reduce(values)
    return values


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def close_distributed(d: Dist) -> None:
    """Wait for every rank, then leave the process group."""
    if d.enabled:
        dist.barrier()
        dist.destroy_process_group()


def parameters_in_sync(module: torch.nn.Module, d: Dist) -> bool:
    """Whether every rank holds exactly the same parameters (checked once, at the end)."""
    if not d.enabled:
        return True
    flat = torch.cat([p.detach().float().flatten() for p in module.parameters()])
    low, high = flat.clone(), flat.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(torch.equal(low, high))
