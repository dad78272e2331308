"""FixMatch (Sohn et al., NeurIPS 2020) as UniMatch's medical script would train it: that
folder (LiheYoung/UniMatch, `more-scenarios/medical/`) has no FixMatch script, so this is
UniMatch's script without its second strong view and its feature-perturbation branch.

Per step: the labelled images `img_x` and the weakly augmented unlabelled images `img_u_w`
(the engine's flips and rotations) go through the network together; the weak prediction,
detached, gives pseudo-labels `mask_u_w` (the argmax) and confidences (its probability). A
strong view `img_u_s` (colour jitter, blur: `clcc.data.strong`) with a CutMix box pasted from
another image of the batch is supervised by the pseudo-labels mixed the same way, on the pixels
whose confidence reaches `threshold` (0.95), with UniMatch's Dice over the classes. Loss
(loss_x + loss_u_s)/2, loss_x the supervised loss.

Adaptations, stated: a binary task has one sigmoid channel (argmax = p > 0.5, confidence
max(p, 1 − p), its Dice over the two classes: `LabelSpace`); the CutMix partner
is the next image of the same unlabelled batch (UniMatch draws a second unlabelled batch and
predicts it in eval mode), so its pseudo-label is the weak prediction already made; the U-Net
carries UniMatch's (= SSL4MIS's) encoder dropout; AdamW, batches and schedule are the engine's.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from clcc.data.strong import cutmix_boxes, paste, strong_view
from clcc.labels import BINARY, LabelSpace
from clcc.methods.base import Batch, Logs, Method, register
from clcc.models.unet import SSL4MIS_DROPOUT, UNet


def pseudo_labels(prob: torch.Tensor, threshold: float, labels: LabelSpace = BINARY
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(pseudo-label: the argmax, keep: its probability ≥ threshold), both (B, 1, H, W)."""
    return labels.hard(prob), (labels.confidence(prob) >= threshold).float()


def cutmix_view(view: torch.Tensor, target: torch.Tensor, keep: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paste a box of the next image of the batch into each image, and its pseudo-label and
    keep mask into the targets: a pixel pasted from image j carries j's label."""
    boxes = cutmix_boxes(view.shape[0], view.shape[-1])
    partner = [t.roll(1, dims=0) for t in (view, target, keep)]
    return (paste(view, partner[0], boxes), paste(target, partner[1], boxes),
            paste(keep, partner[2], boxes))


@register("fixmatch")
class FixMatch(Method):
    default_dropout = SSL4MIS_DROPOUT
    strong_views: ClassVar[int] = 1
    weights: ClassVar[dict[str, float]] = {"loss_u_s1": 1.0}  # loss = (loss_x + Σ w·term) / 2

    def __init__(self, model: UNet, image_size: int, threshold: float = 0.95) -> None:
        super().__init__(model, image_size)
        if not 0.5 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0.5, 1], got {threshold}")
        self.threshold = threshold

    def weak_pass(self, img_x: torch.Tensor, img_u_w: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Logits of `img_x`, weak probabilities of `img_u_w`, and any further predictions of
        the same pass (UniMatch's feature-perturbed one)."""
        logits = self.model(torch.cat([img_x, img_u_w])).logits
        return logits[: len(img_x)], self.labels.probabilities(logits[len(img_x):]), {}

    def unlabelled_losses(self, img_u_w: torch.Tensor, mask_u_w: torch.Tensor,
                          keep: torch.Tensor, extra: dict[str, torch.Tensor]
                          ) -> dict[str, torch.Tensor]:
        """Each strong view (its own colour jitter, blur and CutMix box), all in one pass,
        against the pseudo-labels mixed as the view was."""
        views = [cutmix_view(strong_view(img_u_w), mask_u_w, keep)
                 for _ in range(self.strong_views)]
        logits = self.model(torch.cat([img for img, _, _ in views])).logits
        probs = self.labels.probabilities(logits).chunk(self.strong_views)
        return {f"loss_u_s{k + 1}": self.labels.masked_dice_loss(prob, target, kept)
                for k, (prob, (_, target, kept)) in enumerate(zip(probs, views, strict=True))}

    def training_step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, Logs]:
        img_x, mask_x, img_u_w = batch["image"], batch["mask"], batch["image_u"]
        logits_x, prob_u_w, extra = self.weak_pass(img_x, img_u_w)
        loss_x = self.supervised_loss(logits_x, mask_x)
        mask_u_w, keep = pseudo_labels(prob_u_w.detach(), self.threshold, self.labels)
        terms = self.unlabelled_losses(img_u_w, mask_u_w, keep, extra)
        loss = (loss_x + sum(self.weights[k] * v for k, v in terms.items())) / 2
        logs: Logs = {"sup": loss_x.detach(), "mask_ratio": keep.mean(),
                      **{k: v.detach() for k, v in terms.items()}}
        return loss, logs
