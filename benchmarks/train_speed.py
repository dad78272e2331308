"""Speed and memory of the foundation on this machine (a benchmark, not a test).

Measures: cached-loader + on-device augmentation throughput (images/s), training step time
and achieved GFLOP/s (FLOPs counted by torch's FlopCounterMode for forward + backward), inference
ms/image at batch 1, and peak resident memory. Results go to docs/performance.md by hand, with
the command line printed here.

    python benchmarks/train_speed.py --data data/prepared/kvasir-seg --size 320 --batch 8
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import torch
from timing import median_seconds
from torch.utils.flop_counter import FlopCounterMode

from clcc.data.loaders import TrainBatches, epoch_generator
from clcc.data.prepare import PreparedData
from clcc.engine.evaluate import predict_probabilities
from clcc.engine.runtime import make_runtime
from clcc.engine.trainer import to_device_batch
from clcc.methods import build_method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="prepared data set folder")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8, help="labelled images per step")
    parser.add_argument("--method", default="supervised")
    parser.add_argument("--params", default="{}", help="method parameters as YAML")
    parser.add_argument("--progress", type=float, default=0.1, help="training progress (stage)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the step")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import yaml

    torch.set_num_threads(args.threads)
    runtime = make_runtime("auto", args.precision, args.channels_last)
    data = PreparedData.open(args.data, args.size)
    labelled = data.split("train")
    batches = TrainBatches(data.images, data.masks, labelled, labelled, args.batch, args.batch, 0)
    gen = epoch_generator(0, 0, 1)

    def load_epoch() -> int:
        count = 0
        for host in batches.epoch(0):
            batch = to_device_batch(host, runtime, gen)
            count += batch["image"].shape[0] + batch["image_u"].shape[0]
        return count

    load_epoch()  # first pass: the page cache warms up
    start = time.perf_counter()
    n_images = load_epoch()
    loader_ips = n_images / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in batches.epoch(0):  # the host's share when the device is a GPU
        pass
    host_ips = n_images / (time.perf_counter() - start)

    torch.manual_seed(0)
    method = build_method(args.method, args.size, yaml.safe_load(args.params))
    method.to(runtime.device, memory_format=runtime.memory_format())
    optimizer = torch.optim.AdamW(method.trainable_parameters(), lr=1e-3)
    step_module = torch.compile(method) if args.compile else method
    host = next(iter(batches.epoch(0)))
    if not method.uses_unlabelled:
        host.pop("image_u")
    batch = to_device_batch(host, runtime, gen)

    def step(module: torch.nn.Module = step_module) -> None:
        with runtime.autocast():
            loss, _ = module(batch, args.progress)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        step(method)  # eager: the counter does not see inside compiled graphs
    flops = counter.get_total_flops()
    step_s = median_seconds(step, args.repeats)
    images = data.images[data.split("test")[:1]]
    infer_s = median_seconds(lambda: predict_probabilities(method.model, images, runtime), 10)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads, device {runtime.device}, precision {args.precision}, "
          f"channels_last {args.channels_last}, compile {args.compile}")
    print(f"loader + augmentation: {loader_ips:.0f} images/s ({n_images} images, {args.size}px); "
          f"host batches alone: {host_ips:.0f} images/s")
    print(f"{args.method} training step ({args.batch} labelled"
          f"{'' if not method.uses_unlabelled else f' + {args.batch} unlabelled'}, "
          f"{args.size}px): {step_s:.3f} s, {flops / 1e9:.1f} GFLOP, "
          f"{flops / 1e9 / step_s:.1f} GFLOP/s")
    print(f"inference, batch 1: {1000 * infer_s:.1f} ms/image")
    print(f"peak RSS: {peak_mb:.0f} MiB")


if __name__ == "__main__":
    main()
