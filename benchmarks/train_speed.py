"""Speed and memory of a training step on this machine (a benchmark, not a test).

Measures: cached-loader + on-device augmentation throughput (images/s), training step time
(the device synchronised before every clock read), steps/s, achieved GFLOP/s (FLOPs counted by
torch's FlopCounterMode for forward + backward) and its fraction of the practical peak (the best
of matmuls and channels-last convolutions, `matmul_peak.py`) in the
precision used, inference ms/image at batch 1, and peak memory. Results go to
docs/performance.md by hand, with the command line printed here.

    python benchmarks/train_speed.py --data data/prepared/kvasir-seg --size 320 --batch 8
    python benchmarks/train_speed.py --data ... --size 320 --batch 4 --method clcc \
        --params "{n: 5}" --precision bf16 --channels-last --compile reduce-overhead --json out.json
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch
from matmul_peak import practical_peak
from timing import median_seconds, synchronize
from torch.utils.flop_counter import FlopCounterMode

from clcc.data.loaders import TrainBatches, epoch_generator
from clcc.data.prepare import PreparedData
from clcc.engine.evaluate import predict_probabilities
from clcc.engine.runtime import DTYPES, environment, make_runtime
from clcc.engine.trainer import to_device_batch
from clcc.methods import build_method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="prepared data set folder")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8, help="labelled images per step")
    parser.add_argument("--method", default="supervised")
    parser.add_argument("--model", default="authors", choices=["authors", "ssl4mis"],
                        help="the U-Net (model.name)")
    parser.add_argument("--params", default="{}", help="method parameters as YAML")
    parser.add_argument("--progress", type=float, default=0.1, help="training progress (stage)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16 | auto")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", default="", metavar="MODE",
                        help="torch.compile the U-Net: default | reduce-overhead | max-autotune")
    parser.add_argument("--optimizer", default="auto", choices=["auto", "foreach", "fused"],
                        help="AdamW kernel; auto is torch's choice, as in the trainer")
    parser.add_argument("--repeats", type=int, default=5, help="timings (the median is kept)")
    parser.add_argument("--inner", type=int, default=1, help="steps per timing")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--skip-loader", action="store_true", help="no loader measurement")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    import yaml

    torch.set_num_threads(args.threads)
    runtime = make_runtime(args.device, args.precision, args.channels_last)
    device = runtime.device
    data = PreparedData.open(args.data, args.size)
    labelled = data.split("train")
    torch.manual_seed(0)
    method = build_method(args.method, args.size, yaml.safe_load(args.params),
                          architecture=args.model)
    # as the trainer draws them: FixMatch and UniMatch take a second unlabelled batch (the
    # CutMix partner)
    batches = TrainBatches(data.images, data.masks, labelled, labelled, args.batch,
                           args.batch * method.unlabelled_batches, 0,
                           pin_memory=device.type == "cuda")
    gen = epoch_generator(0, 0, 1)
    figures: dict[str, object] = {}

    def load_epoch() -> int:
        count = 0
        for host in batches.epoch(0):
            batch = to_device_batch(host, runtime, gen)
            count += batch["image"].shape[0] + batch["image_u"].shape[0]
        synchronize(device)
        return count

    if not args.skip_loader:
        load_epoch()  # first pass: the page cache warms up
        start = time.perf_counter()
        n_images = load_epoch()
        figures["loader_images_per_s"] = n_images / (time.perf_counter() - start)
        start = time.perf_counter()
        for _ in batches.epoch(0):  # the host's share when the device is a GPU
            pass
        figures["host_images_per_s"] = n_images / (time.perf_counter() - start)

    method.to(device, memory_format=runtime.memory_format())
    kernel = {} if args.optimizer == "auto" else {args.optimizer: True}
    optimizer = torch.optim.AdamW(method.trainable_parameters(), lr=1e-3, **kernel)
    host = next(iter(batches.epoch(0)))
    if not method.uses_unlabelled:
        host.pop("image_u")
    batch = to_device_batch(host, runtime, gen)

    def step() -> None:
        if args.compile == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        with runtime.autocast():
            loss, _ = method(batch, args.progress)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        step()  # eager: the counter does not see inside compiled graphs
    flops = counter.get_total_flops()
    images = data.images[data.split("test")[:1]]  # before compiling: eager inference
    infer_s = median_seconds(lambda: predict_probabilities(method.model, images, runtime), 10,
                             device)
    if args.compile:
        method.model.compile(mode=args.compile, dynamic=False)
        start = time.perf_counter()
        step()
        synchronize(device)
        figures["compile_s"] = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_s = median_seconds(step, args.repeats, device, warmup=args.warmup, inner=args.inner)
    dtype_name = next(k for k, v in DTYPES.items() if v == runtime.dtype)
    peak, _ = practical_peak(runtime.dtype, device)
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    hardware = environment(device)["hardware"]
    figures.update({
        "hardware": hardware, "torch": torch.__version__, "threads": args.threads,
        "device": str(device), "precision": dtype_name, "channels_last": args.channels_last,
        "compile": args.compile or "off", "optimizer": args.optimizer, "method": args.method,
        "params": args.params, "progress": args.progress, "batch": args.batch, "size": args.size,
        "step_s": step_s, "steps_per_s": 1 / step_s, "gflop": flops / 1e9,
        "gflop_per_s": flops / 1e9 / step_s, "practical_peak_gflop_per_s": peak,
        "fraction_of_peak": flops / 1e9 / step_s / peak, "infer_ms": 1000 * infer_s,
        "peak_memory_gib": memory,
    })
    print(f"machine: {hardware}, torch {torch.__version__}, {args.threads} threads, device "
          f"{device}, precision {dtype_name}, channels_last {args.channels_last}, compile "
          f"{args.compile or 'off'}, optimizer {args.optimizer}")
    if "loader_images_per_s" in figures:
        print(f"loader + augmentation: {figures['loader_images_per_s']:.0f} images/s "
              f"({args.size}px); host batches alone: {figures['host_images_per_s']:.0f} images/s")
    unlabelled = args.batch * method.unlabelled_batches
    print(f"{args.method} training step ({args.batch} labelled"
          f"{'' if not method.uses_unlabelled else f' + {unlabelled} unlabelled'}, "
          f"{args.size}px): {1000 * step_s:.2f} ms = {1 / step_s:.1f} steps/s, "
          f"{flops / 1e9:.1f} GFLOP, {flops / 1e9 / step_s:.1f} GFLOP/s = "
          f"{100 * figures['fraction_of_peak']:.1f} % of the {dtype_name} practical peak "
          f"({peak:.0f} GFLOP/s)")
    if "compile_s" in figures:
        print(f"compilation (first compiled step): {figures['compile_s']:.1f} s")
    print(f"inference, batch 1: {1000 * infer_s:.1f} ms/image")
    print(f"peak memory: {memory:.2f} GiB ({'GPU allocated' if device.type == 'cuda' else 'RSS'})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
