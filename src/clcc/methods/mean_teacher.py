"""Mean Teacher (Tarvainen & Valpola, NeurIPS 2017), as in SSL4MIS.

The teacher is an exponential moving average of the student (decay min(1 − 1/(s+1), 0.99), s the
steps done before this one: first 0); it sees the images with clamped Gaussian noise (N(0, 0.1)
clipped to ±0.2, in units of pixels in [0, 1], as SSL4MIS adds it) and the student is
pulled towards its probabilities (softmax over the classes; a binary task's one sigmoid
channel) by an MSE on the unlabelled images of the batch
(`volume_batch[labeled_bs:]` in SSL4MIS; `consistency_on="all"` uses all 8), weighted by
w·exp(−5(1 − t)²) with t the ramp-up progress. Student and teacher carry SSL4MIS's encoder
dropout (0.05, 0.1, 0.2, 0.3, 0.5 per level) unless the config sets `model.dropout`. A
binary task keeps one logit channel and the sigmoid, so its MSE is over one probability map
(the same value as over the two softmax channels). The teacher runs
in training mode (batch statistics, as in SSL4MIS) without touching its running statistics; the
EMA covers parameters and BatchNorm buffers. Evaluation uses the student (`evaluate="teacher"`
to use the teacher).
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn

from clcc.data.loaders import pixel_statistics
from clcc.methods.base import Batch, Logs, Method, all_images, ema_update, register
from clcc.methods.ramps import sigmoid_rampup
from clcc.models.norm import frozen_bn_statistics
from clcc.models.unet import SSL4MIS_DROPOUT, UNet


@register("mean-teacher")
class MeanTeacher(Method):
    default_dropout = SSL4MIS_DROPOUT
    def __init__(
        self,
        model: UNet,
        image_size: int | tuple[int, ...],
        ema_decay: float = 0.99,
        consistency: float = 0.1,
        rampup: float = 1.0,
        noise_std: float = 0.1,
        noise_clip: float = 0.2,
        evaluate: Literal["student", "teacher"] = "student",
        consistency_on: Literal["unlabelled", "all"] = "unlabelled",
    ) -> None:
        super().__init__(model, image_size)
        if not 0 <= ema_decay < 1 or consistency < 0 or rampup < 0 or noise_std < 0:
            raise ValueError(f"need 0 <= ema_decay < 1 and consistency, rampup, noise_std >= 0; "
                             f"got {ema_decay}, {consistency}, {rampup}, {noise_std}")
        self.teacher = copy.deepcopy(model).requires_grad_(False)
        self.ema_decay, self.consistency, self.rampup = ema_decay, consistency, rampup
        self.noise_std, self.noise_clip, self.evaluate = noise_std, noise_clip, evaluate
        self.consistency_on = consistency_on

    def noisy(self, x: torch.Tensor) -> torch.Tensor:
        """`x` (standardised) with SSL4MIS's noise, which it adds to pixels in [0, 1]: drawn in
        those units and divided by each channel's std, so its strength in pixels is theirs."""
        noise = (torch.randn_like(x) * self.noise_std).clamp(-self.noise_clip, self.noise_clip)
        std = pixel_statistics(x.shape[1], x.dim() - 2)[1]
        return x + noise / std.to(device=x.device, dtype=x.dtype)

    @torch.no_grad()
    def teacher_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        with frozen_bn_statistics(self.teacher):
            return self.labels.probabilities(self.teacher(self.noisy(x)).logits)

    def consistency_loss(
        self, student: torch.Tensor, x: torch.Tensor, progress: float, logs: Logs
    ) -> torch.Tensor:
        """MSE between student and teacher probabilities; UAMT overrides this one hook."""
        return (student - self.teacher_probabilities(x)).pow(2).mean()

    def training_step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, Logs]:
        n_labelled = batch["image"].shape[0]
        x = all_images(batch)
        logits = self.model(x).logits
        sup = self.supervised_loss(logits[:n_labelled], batch["mask"])
        logs: Logs = {"sup": sup.detach()}
        first = n_labelled if self.consistency_on == "unlabelled" else 0
        consist = self.consistency_loss(self.labels.probabilities(logits[first:]), x[first:],
                                        progress, logs)
        weight = self.consistency * sigmoid_rampup(progress, self.rampup)
        logs["consist"] = consist.detach()
        return sup + weight * consist, logs

    def after_step(self, step: int) -> None:
        """SSL4MIS passes the step count before its increment: the first decay is 0 (the
        teacher becomes the student), then 1/2, 2/3, … up to `ema_decay`."""
        done = step - 1
        ema_update(self.teacher, self.model, min(1.0 - 1.0 / (done + 1), self.ema_decay))

    def eval_model(self) -> nn.Module:
        return self.teacher if self.evaluate == "teacher" else self.model
