"""Inference latency per image, batch 1: PyTorch eager (fp32, both memory formats) against the
ONNX Runtime export of the same U-Net (a benchmark, not a test). Latency does not depend on the
weights, so an untrained U-Net of the default widths is used.

    python benchmarks/inference_latency.py --size 320 --threads 1
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from timing import median_seconds

from clcc.engine.evaluate import predict_probabilities
from clcc.engine.export import OnnxModel, export_onnx
from clcc.engine.runtime import make_runtime
from clcc.methods import build_method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_method("supervised", args.size, {}).model.eval()
    image = np.random.default_rng(0).integers(0, 256, (1, args.size, args.size, 3), np.uint8)
    results = {}
    for channels_last in (False, True):
        runtime = make_runtime("cpu", "fp32", channels_last)
        model.to(memory_format=runtime.memory_format())
        results[f"eager fp32, channels_last={channels_last}"] = (
            median_seconds(lambda r=runtime: predict_probabilities(model, image, r), args.repeats),
            predict_probabilities(model, image, runtime),
        )
    with tempfile.TemporaryDirectory() as tmp:
        onnx = OnnxModel(export_onnx(model, args.size, Path(tmp) / "model.onnx"), args.threads)
        results["onnxruntime"] = (median_seconds(lambda: onnx.probabilities(image), args.repeats),
                                  onnx.probabilities(image))
    reference = results["eager fp32, channels_last=False"][1]
    print(f"{args.size}×{args.size}, batch 1, {args.threads} threads, torch {torch.__version__}")
    for name, (seconds, prob) in results.items():
        diff = (prob - reference).abs().max().item()
        print(f"{name}: {1000 * seconds:.1f} ms/image (max |Δp| to eager {diff:.1e})")


if __name__ == "__main__":
    main()
