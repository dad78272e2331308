"""CLCC: cross-level contrastive learning and consistency constraint (Zhao et al., ISBI 2022).

Every image of the batch (labelled and unlabelled) is also cut into n×n patches that go
through the same U-Net (Sec. 2.1). Stage 1 (the first `stage1` fraction of training) adds
α·L_contrast, eq. (1), between the projected full-image map p(Z) and the patch vectors p(z_i);
stage 2 adds β·L_consist, eq. (2), between patch predictions and the full-image prediction.
L_sup = ½(Dice + CE) on the labelled images throughout, eq. (3)–(4).

The network trains without dropout unless the config sets `model.dropout`: the paper's
U-Net has none, and UA-MT's V-Net, which has, broke under eq. (1) with it (`default_dropout`).

Options beyond the paper, each off by default so that the default is the paper's method:
- `variant="authors"`: the public implementation's contrastive loss (negatives from the patch
  vectors, patch vectors detached as keys, L1 normalisation) instead of eq. (1).
- `patch_bn="frozen"`: patch batches use their batch statistics but leave BatchNorm's running
  statistics alone, so evaluation statistics describe full images only.
- `reduction="mean"`: average eq. (2) over the n² positions instead of summing them (named so
  that it is not mistaken for a weight: β is the weight).
Ablations of Table 1 keep the two-stage schedule: `alpha=0` is "w/o contrast" (stage 1 is
supervised only) and `beta=0` is "w/o consistency" (stage 2 is supervised only).
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

from clcc.geometry import to_patches
from clcc.losses import cross_level_consistency_loss, cross_level_contrastive_loss
from clcc.methods.base import Batch, Logs, Method, all_images, register
from clcc.models.heads import ProjectionHead
from clcc.models.norm import frozen_bn_statistics
from clcc.models.unet import UNet

VARIANTS = {  # negatives, norm, detach patch vectors
    "paper": ("image", 2, False),
    "authors": ("patch", 1, True),
}


@register("clcc")
class CLCC(Method):
    has_unused_parameters = True  # the projection head rests in stage 2
    default_dropout = (0.0,)  # none, as on the paper's U-Net: with the V-Net's Dropout3d(0.5)
    # CLCC collapsed on LA, without it it trains (docs/results.md, "CLCC in 3-D on LA quick");
    # `model.dropout` still sets one
    def __init__(
        self,
        model: UNet,
        image_size: int | tuple[int, ...],
        n: int = 5,
        dim: int = 128,
        tau: float = 0.07,
        stage1: float = 1 / 3,
        alpha: float = 1.0,
        beta: float = 1.0,
        variant: Literal["paper", "authors"] = "paper",
        patch_bn: Literal["update", "frozen"] = "update",
        reduction: Literal["sum", "mean"] = "sum",
    ) -> None:
        super().__init__(model, image_size)
        if n < 1 or dim < 1 or tau <= 0 or not 0 <= stage1 <= 1 or alpha < 0 or beta < 0:
            raise ValueError(f"need n >= 1, dim >= 1, tau > 0, 0 <= stage1 <= 1, alpha >= 0, "
                             f"beta >= 0; got n={n}, dim={dim}, tau={tau}, stage1={stage1}, "
                             f"alpha={alpha}, beta={beta}")
        self.n, self.tau, self.stage1 = n, tau, stage1
        self.alpha, self.beta = alpha, beta
        self.negatives, self.norm, self.detach_patches = VARIANTS[variant]
        self.patch_bn, self.reduction = patch_bn, reduction
        self.head = ProjectionHead(model.widths[0], self.patch_size(image_size), dim,
                                   spatial_dims=model.spatial_dims)

    def patch_size(self, image_size: int | tuple[int, ...]) -> int | tuple[int, ...]:
        """Side of one patch (its sides in 3-D); the image or volume patch must split into
        n×n (n×n×n) parts the network can take."""
        divisor = self.model.divisor
        sides = (image_size,) if isinstance(image_size, int) else tuple(image_size)
        for side in sides:
            if side % self.n or (side // self.n) % divisor:
                raise ValueError(
                    f"CLCC: image size {side} must split into {self.n}x{self.n} patches whose "
                    f"side is divisible by {divisor} (the U-Net's downsampling); e.g. "
                    f"{self.n * divisor * max(1, round(side / (self.n * divisor)))}"
                )
        parts = tuple(side // self.n for side in sides)
        return parts[0] if isinstance(image_size, int) else parts

    def weights(self, progress: float) -> tuple[float, float]:
        """(α, β) at this point of training: stage 1 contrast, stage 2 consistency."""
        return (self.alpha, 0.0) if progress < self.stage1 else (0.0, self.beta)

    def _patch_pass(self, patches: torch.Tensor, need_grad: bool):
        bn = frozen_bn_statistics(self.model) if self.patch_bn == "frozen" else (
            contextlib.nullcontext()
        )
        with bn, torch.set_grad_enabled(need_grad and torch.is_grad_enabled()):
            return self.model(patches)

    def training_step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, Logs]:
        n_labelled = batch["image"].shape[0]
        x = all_images(batch)
        expected = ((self.image_size,) * 2 if isinstance(self.image_size, int)
                    else tuple(self.image_size))
        if tuple(x.shape[2:]) != expected:
            raise ValueError(f"CLCC was built for inputs of {expected}, got {tuple(x.shape)}")
        out = self.model(x)
        loss = self.supervised_loss(out.logits[:n_labelled], batch["mask"])
        logs: Logs = {"sup": loss.detach()}
        alpha, beta = self.weights(progress)
        if alpha or beta:
            patch_out = self._patch_pass(
                to_patches(x, self.n), need_grad=bool(beta) or not self.detach_patches
            )
        if alpha:
            b, positions = x.shape[0], self.n ** (x.dim() - 2)  # n² parts, or n³
            image_vectors = self.head(out.features).flatten(2).transpose(1, 2)  # (B, n², D)
            patch_vectors = self.head(patch_out.features).reshape(b, positions, -1)
            if self.detach_patches:
                patch_vectors = patch_vectors.detach()
            contrast = cross_level_contrastive_loss(
                image_vectors, patch_vectors, self.tau, self.negatives, self.norm
            )
            loss = loss + alpha * contrast
            logs["contrast"] = contrast.detach()
        if beta:
            consist = cross_level_consistency_loss(
                self.labels.probabilities(patch_out.logits),
                self.labels.probabilities(out.logits), self.n, self.reduction,
            )
            loss = loss + beta * consist
            logs["consist"] = consist.detach()
        logs["stage"] = torch.tensor(1.0 if progress < self.stage1 else 2.0, device=x.device)
        return loss, logs
