"""clcc's per-image Dice of a CLCC-semi checkpoint on the 200 test images (clcc's 320² cache),
thresholded as clcc does (probability > 0.5) and as CLCC-semi's `test_model` does (the logit
> 0.5, i.e. probability > 0.622: `clcc evaluate --threshold 0.6225`; TP := 1 where there is
no true positive), each scored by clcc's evaluation and by CLCC-semi's formula: where
CLCC-semi's own test figure differs from clcc's scoring of the same checkpoint.

    python benchmarks/authors/clcc_semi_threshold.py RUN/work/weights/best_*.pth ../sbs/kvasir
"""
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from clcc.data.prepare import PreparedData
from clcc.engine.evaluate import predict_probabilities
from clcc.engine.runtime import make_runtime
from clcc.metrics import image_metrics
from clcc.models.authors_weights import load_authors_model


def dice_clcc_semi(pred: np.ndarray, truth: np.ndarray) -> float:
    """`utils.evaluate_seg`: F1 of precision and recall, a missing true positive counted 1."""
    tp = max((pred & truth).sum(), 1)
    recall, precision = tp / (tp + (~pred & truth).sum()), tp / (tp + (pred & ~truth).sum())
    return 2 * precision * recall / (precision + recall)


checkpoint, prepared = Path(sys.argv[1]), Path(sys.argv[2])
torch.set_num_threads(1)
data = PreparedData.open(prepared, 320, "bilinear")
model = load_authors_model(checkpoint, data.labels, data.channels)
idx = data.indices(data.subset("test"), "test")
runtime = make_runtime("cpu", "fp32")
prob = predict_probabilities(model, data.images[idx], runtime)
truth = data.masks[idx] > 0
for name, cut in (("probability > 0.5", 0.5), ("logit > 0.5", 1 / (1 + np.exp(-0.5)))):
    # the cut of `--threshold`, on the one pass's probabilities
    pred = dataclasses.replace(model.labels, threshold=cut).hard(prob)[:, 0].numpy() > 0
    pairs = list(zip(pred, truth, strict=True))
    clcc = np.mean([image_metrics(p, t, with_hd95=False)["dice"] for p, t in pairs])
    theirs = np.mean([dice_clcc_semi(p, t) for p, t in pairs])
    print(f"{name}: clcc's Dice {100 * clcc:.2f}, CLCC-semi's formula {100 * theirs:.2f}")
