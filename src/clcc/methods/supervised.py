"""Supervised baseline: the U-Net trained on the labelled images only, L_sup = ½(Dice + CE)."""

from __future__ import annotations

import torch

from clcc.methods.base import Batch, Logs, Method, register


@register("supervised")
class Supervised(Method):
    uses_unlabelled = False

    def training_step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, Logs]:
        loss = self.supervised_loss(self.model(batch["image"]).logits, batch["mask"])
        return loss, {"sup": loss.detach()}
