"""Uncertainty rectified pyramid consistency (URPC; Luo et al., MICCAI 2021), as in SSL4MIS.

The network is a `PyramidUNet`: the main head plus auxiliary heads on three decoder scales,
upsampled to the input size, with feature perturbations in training. Supervised loss
½(Dice + CE) on every head, averaged. Consistency, on the unlabelled images
(`[labeled_bs:]` in SSL4MIS; `consistency_on="all"` for all 8): with p̄ the mean of the four
heads' probabilities and D_s = KL(p̄ ‖ p_s) per pixel, each head contributes
mean(exp(−D_s)·(p̄ − p_s)²) / mean(exp(−D_s)) + mean(D_s); the four are averaged and weighted
by w·exp(−5(1 − t)²). The KL is over the classes (a binary task's one sigmoid channel: over
(p, 1 − p); `LabelSpace.kl`). The U-Net carries SSL4MIS's encoder dropout unless the config
sets `model.dropout`.
Prediction and export use the main head only (`UNet.plain_state_dict`).
"""

from __future__ import annotations

from typing import Literal

import torch

from clcc.labels import LabelSpace
from clcc.methods.base import Batch, Logs, Method, all_images, register
from clcc.methods.ramps import sigmoid_rampup
from clcc.models.unet import SSL4MIS_DROPOUT, PyramidUNet


def rectified_consistency(probs: list[torch.Tensor], labels: LabelSpace) -> torch.Tensor:
    """URPC's uncertainty-rectified consistency over the heads' probability maps."""
    mean = torch.stack(probs).mean(0)
    terms = []
    for p in probs:
        divergence = labels.kl(mean, p)
        weight = torch.exp(-divergence)
        squared = (mean - p).pow(2)
        terms.append((weight * squared).mean() / (weight.mean() + 1e-8) + divergence.mean())
    return torch.stack(terms).mean()


@register("urpc")
class URPC(Method):
    model_class = PyramidUNet

    default_dropout = SSL4MIS_DROPOUT

    def __init__(
        self, model: PyramidUNet, image_size: int | tuple[int, ...], consistency: float = 0.1,
        rampup: float = 1.0, consistency_on: Literal["unlabelled", "all"] = "unlabelled",
    ) -> None:
        super().__init__(model, image_size)
        if consistency < 0 or rampup < 0:
            raise ValueError(f"need consistency, rampup >= 0; got {consistency}, {rampup}")
        self.consistency, self.rampup, self.consistency_on = consistency, rampup, consistency_on

    def training_step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, Logs]:
        n_labelled = batch["image"].shape[0]
        x = all_images(batch)
        out = self.model(x)
        heads = [out.logits, *out.aux]
        sup = torch.stack([self.supervised_loss(h[:n_labelled], batch["mask"])
                           for h in heads]).mean()
        first = n_labelled if self.consistency_on == "unlabelled" else 0
        consist = rectified_consistency([self.labels.probabilities(h[first:]) for h in heads],
                                        self.labels)
        weight = self.consistency * sigmoid_rampup(progress, self.rampup)
        return sup + weight * consist, {"sup": sup.detach(), "consist": consist.detach()}
