"""Runs an authors' training script, unedited, on a CPU: loaded by Python at start-up when this
folder is on PYTHONPATH (`benchmarks/authors/side_by_side.py` puts it there).

It changes only the device, threads, distributed set-up, the seed and protocol arguments, and
prints every change it makes (prefixed `[shim]`) so that the run's log states them:
- `.cuda()` of tensors and modules returns them unchanged, a tensor's `.to('cuda')` goes to the
  CPU; `torch.cuda.device_count()` is 1 and `set_device` does nothing, so a one-GPU script's
  arithmetic stays as published; `torch.load` reads their own checkpoints as the torch they
  wrote for did (`weights_only=False` by default: CLCC-semi keeps a NumPy scalar beside its
  weights);
- `SyncBatchNorm.convert_sync_batchnorm` and `DistributedDataParallel` / `DataParallel` return
  the module itself (one process: the same arithmetic); `init_process_group` uses gloo;
- torch runs on `SHIM_THREADS` threads (default 1); `numpy.int`, which NumPy 1.24 removed and
  BCP's LA validation still uses, is `int` again;
- `SHIM_SEED` seeds Python, NumPy and torch before the script runs (for scripts that never seed);
- `SHIM_ARGS` (a JSON object) sets parsed command-line arguments the script offers no usable
  flag for (SSL4MIS's `--patch_size` is `type=list`);
- `SHIM_VAL_SIZE` validates SSL4MIS's 2-D scripts at that size: their `val_2D` zooms every
  validation slice to a default 256² that no argument reaches, whatever `--patch_size` trained
  (`SHIM_VAL_MODULE` names BCP's copy, `utils.val_2d`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _say(message: str) -> None:
    print(f"[shim] {message}", file=sys.stderr, flush=True)


def _install() -> None:
    import torch
    from torch import nn

    threads = int(os.environ.get("SHIM_THREADS", "1"))
    torch.set_num_threads(threads)
    _say(f"torch threads: {threads}")

    import numpy as np

    if not hasattr(np, "int"):  # BCP's LA validation (`test_single_case`) still uses it
        np.int = int
        _say("numpy.int = int (the alias NumPy 1.24 removed)")

    torch.Tensor.cuda = lambda self, *a, **k: self
    nn.Module.cuda = lambda self, *a, **k: self
    to = torch.Tensor.to

    def to_cpu(self, *args, **kwargs):  # CLCC-semi moves batches with .to(device='cuda')
        def here(d):
            return "cpu" if isinstance(d, str | torch.device) and str(d).startswith("cuda") else d
        return to(self, *map(here, args), **{k: here(v) for k, v in kwargs.items()})

    torch.Tensor.to = to_cpu

    load = torch.load

    def load_as_written(*args, **kwargs):  # their checkpoints hold NumPy scalars beside
        kwargs.setdefault("weights_only", False)
        return load(*args, **kwargs)

    torch.load = load_as_written
    _say("torch.load: weights_only=False by default, as before torch 2.6 (their own files)")
    torch.cuda.device_count = lambda: 1
    torch.cuda.set_device = lambda *a, **k: None
    _say(".cuda() returns its tensor or module unchanged, .to('cuda') moves to the CPU")

    nn.SyncBatchNorm.convert_sync_batchnorm = classmethod(lambda cls, module, *a, **k: module)
    nn.parallel.DistributedDataParallel = lambda module, *a, **k: module
    nn.DataParallel = lambda module, *a, **k: module
    _say("SyncBatchNorm, DistributedDataParallel, DataParallel: the plain module")

    import torch.distributed as dist

    init = dist.init_process_group

    def init_gloo(*args, **kwargs):
        kwargs["backend"] = "gloo"
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", os.environ.get("SHIM_PORT", "29517"))
        _say("init_process_group: backend gloo, one process")
        return init(*args[1:], **kwargs) if args else init(**kwargs)

    dist.init_process_group = init_gloo

    seed = os.environ.get("SHIM_SEED")
    if seed is not None:
        import random

        import numpy as np

        random.seed(int(seed))
        np.random.seed(int(seed))
        torch.manual_seed(int(seed))
        _say(f"seeded random, numpy and torch with {seed}")

    overrides = json.loads(os.environ.get("SHIM_ARGS", "{}"))
    if overrides:
        parse = argparse.ArgumentParser.parse_args

        def parse_with_overrides(self, *args, **kwargs):
            namespace = parse(self, *args, **kwargs)
            for key, value in overrides.items():
                if hasattr(namespace, key):
                    _say(f"argument {key}: {getattr(namespace, key)!r} -> {value!r}")
                    setattr(namespace, key, value)
            return namespace

        argparse.ArgumentParser.parse_args = parse_with_overrides

    val_size = os.environ.get("SHIM_VAL_SIZE")
    if val_size:
        import importlib

        module = os.environ.get("SHIM_VAL_MODULE", "val_2D")  # found through PYTHONPATH
        validation = importlib.import_module(module)
        size = [int(val_size), int(val_size)]
        for name in ("test_single_volume", "test_single_volume_ds"):
            function = getattr(validation, name, None)
            if function is not None:
                function.__defaults__ = (size,)
                _say(f"{module}.{name}: patch_size default [256, 256] -> {size}")


if os.environ.get("SHIM_ACTIVE") == "1":
    _install()
