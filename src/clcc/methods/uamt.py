"""Uncertainty-aware Mean Teacher (Yu et al., MICCAI 2019), as in SSL4MIS.

Mean Teacher with one change, the uncertainty mask: the teacher makes T (8) stochastic passes
(input noise, and the encoder dropout that SSL4MIS's U-Net carries: 0.05…0.5 per level) on the
unlabelled images (as the consistency, `consistency_on`); the uncertainty of a pixel is the
predictive entropy of the mean probability, −Σ_c p̄_c log p̄_c (natural log, at most ln C for C
classes, `LabelSpace.entropy`), and only pixels whose uncertainty is below a threshold that
ramps from 0.75·ln 2 to ln 2 over the run count in the consistency: SSL4MIS's 2-D script keeps
UA-MT's two-class ln 2 for ACDC's four classes (`threshold_max="lnC"` ramps to the entropy's
maximum ln C instead), and both it and UA-MT's LA script ramp it over `max_iterations`,
whatever the consistency weight's ramp (`rampup`). The consistency: the squared differences of
the C class probabilities summed over the certain pixels and divided by twice their number
(SSL4MIS's `2*torch.sum(mask)`, written for two classes and kept for four: at C = 2 the mean
over classes of UA-MT's LA script).
The target is the teacher's first noisy pass, as SSL4MIS's separate noisy teacher pass.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from clcc.labels import LabelSpace
from clcc.methods.base import Logs, register
from clcc.methods.mean_teacher import MeanTeacher
from clcc.methods.ramps import sigmoid_rampup
from clcc.models.unet import UNet


def uncertainty_mask(passes: torch.Tensor, threshold: float, labels: LabelSpace) -> torch.Tensor:
    """`passes` (T, B, heads, H, W) probabilities → bool (B, 1, H, W) mask of the pixels whose
    entropy of the mean prediction is below `threshold`."""
    return labels.entropy(passes.mean(0)) < threshold


@register("uamt")
class UAMT(MeanTeacher):
    def __init__(self, model: UNet, image_size: int | tuple[int, ...], passes: int = 8,
                 threshold_max: Literal["ln2", "lnC"] = "ln2", **mean_teacher) -> None:
        super().__init__(model, image_size, **mean_teacher)
        self.passes = passes
        self.ceiling = math.log(2) if threshold_max == "ln2" else self.labels.max_entropy

    def threshold(self, progress: float) -> float:
        return (0.75 + 0.25 * sigmoid_rampup(progress, 1.0)) * self.ceiling

    def consistency_loss(
        self, student: torch.Tensor, x: torch.Tensor, progress: float, logs: Logs
    ) -> torch.Tensor:
        passes = torch.stack([self.teacher_probabilities(x) for _ in range(self.passes)])
        mask = uncertainty_mask(passes, self.threshold(progress), self.labels).float()
        logs["certain"] = mask.mean().detach()
        # summed over the C class channels (a binary head's (p − q)² stands for both) and
        # divided by twice the certain pixels: SSL4MIS's normaliser for any C, written for 2
        squared = (student - passes[0]).pow(2) * (self.labels.classes / self.labels.heads)
        return (mask * squared).sum() / (2 * mask.sum() + 1e-16)
