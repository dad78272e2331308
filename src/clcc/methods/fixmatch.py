"""FixMatch (Sohn et al., NeurIPS 2020) as UniMatch's medical script trains its weak-to-strong
branch (LiheYoung/UniMatch, `more-scenarios/medical/unimatch.py` without its second strong view
and its feature-perturbation branch; UniMatch's own `fixmatch.py` is its natural-image script,
and SSL4MIS's `train_fixmatch_standard_augs.py` / `_cta.py` train a different recipe: a weak
and a strong view of every image, argmax of min-max-normalised probabilities, a complementary
loss, and a consistency weight ramped over 200 × 150 iterations: `fixmatch-ssl4mis`).

Per step: the labelled images `img_x` and the weakly augmented unlabelled images `img_u_w`
(the engine's flips and rotations) go through the network together; the weak prediction,
detached, gives pseudo-labels `mask_u_w` (the argmax) and confidences (its probability). A
strong view `img_u_s` (colour jitter, blur: `clcc.data.strong`) with a CutMix box pasted from a
partner image is supervised by the pseudo-labels mixed the same way, on the pixels whose
confidence reaches `threshold` (0.95), with UniMatch's Dice over the classes. Loss
(loss_x + loss_u_s)/2, loss_x the supervised loss.

The partner (`mix`): `second_batch`, as UniMatch, is a second unlabelled batch `img_u_w_mix`
(the engine draws twice the unlabelled batch; the second half), predicted in eval mode without
gradients, whose own strong view gives the pasted box; `same_batch` (clcc before it was run
beside UniMatch) is the next image of the same batch and its train-mode weak prediction.

Adaptations, stated: a binary task has one sigmoid channel (argmax = p > 0.5, confidence
max(p, 1 − p), its Dice over the two classes: `LabelSpace`); the U-Net carries UniMatch's (=
SSL4MIS's) encoder dropout; optimiser, batches and schedule are the engine's.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from clcc.data.strong import strong_view
from clcc.geometry import cutmix_boxes, paste
from clcc.labels import BINARY, LabelSpace
from clcc.methods.base import Batch, Logs, Method, register
from clcc.models.unet import SSL4MIS_DROPOUT, UNet


def pseudo_labels(prob: torch.Tensor, threshold: float, labels: LabelSpace = BINARY
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(pseudo-label: the argmax, keep: its probability ≥ threshold), both (B, 1, H, W)."""
    return labels.hard(prob), (labels.confidence(prob) >= threshold).float()


Mixed = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""(image, pseudo-label, keep mask) of a batch: what a CutMix box takes from a partner."""


def cutmix_view(view: torch.Tensor, target: torch.Tensor, keep: torch.Tensor,
                partner: Mixed | None = None) -> Mixed:
    """Paste a box of each image's partner (by default the next image of the batch) into it,
    and the partner's pseudo-label and keep mask into its targets: a pasted pixel carries the
    label and confidence of the image it came from."""
    boxes = cutmix_boxes(view.shape[0], tuple(view.shape[2:]))
    if partner is None:
        partner = tuple(t.roll(1, dims=0) for t in (view, target, keep))
    return (paste(view, partner[0], boxes), paste(target, partner[1], boxes),
            paste(keep, partner[2], boxes))


@register("fixmatch")
class FixMatch(Method):
    default_dropout = SSL4MIS_DROPOUT
    strong_views: ClassVar[int] = 1
    weights: ClassVar[dict[str, float]] = {"loss_u_s1": 1.0}  # loss = (loss_x + Σ w·term) / 2

    def __init__(self, model: UNet, image_size: int | tuple[int, ...], threshold: float = 0.95,
                 mix: Literal["second_batch", "same_batch"] = "second_batch") -> None:
        super().__init__(model, image_size)
        if not 0.5 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0.5, 1], got {threshold}")
        self.threshold, self.mix = threshold, mix

    @property
    def unlabelled_batches(self) -> int:
        return 2 if self.mix == "second_batch" else 1

    @torch.no_grad()
    def mix_partner(self, img_u_w_mix: torch.Tensor) -> Mixed:
        """The second batch's weak view, pseudo-labels and keep mask, predicted in eval mode
        (dropout off, BatchNorm's running statistics), as UniMatch predicts `img_u_w_mix`."""
        was_training = self.model.training
        self.model.eval()
        try:
            prob = self.labels.probabilities(self.model(img_u_w_mix).logits)
        finally:
            self.model.train(was_training)
        return (img_u_w_mix, *pseudo_labels(prob, self.threshold, self.labels))

    def weak_pass(self, img_x: torch.Tensor, img_u_w: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Logits of `img_x`, weak probabilities of `img_u_w`, and any further predictions of
        the same pass (UniMatch's feature-perturbed one)."""
        logits = self.model(torch.cat([img_x, img_u_w])).logits
        return logits[: len(img_x)], self.labels.probabilities(logits[len(img_x):]), {}

    def unlabelled_losses(self, img_u_w: torch.Tensor, mask_u_w: torch.Tensor,
                          keep: torch.Tensor, extra: dict[str, torch.Tensor],
                          mix: Mixed | None = None) -> dict[str, torch.Tensor]:
        """Each strong view (its own colour jitter, blur and CutMix box, pasted from the
        partner's own strong view), all in one pass, against the pseudo-labels mixed as the
        view was."""
        views = []
        for _ in range(self.strong_views):
            partner = None if mix is None else (strong_view(mix[0]), *mix[1:])
            views.append(cutmix_view(strong_view(img_u_w), mask_u_w, keep, partner))
        logits = self.model(torch.cat([img for img, _, _ in views])).logits
        probs = self.labels.probabilities(logits).chunk(self.strong_views)
        return {f"loss_u_s{k + 1}": self.labels.masked_dice_loss(prob, target, kept)
                for k, (prob, (_, target, kept)) in enumerate(zip(probs, views, strict=True))}

    def training_step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, Logs]:
        img_x, mask_x, img_u_w = batch["image"], batch["mask"], batch["image_u"]
        mix = None
        if self.mix == "second_batch":
            img_u_w, img_u_w_mix = img_u_w.chunk(2)
            mix = self.mix_partner(img_u_w_mix)
        logits_x, prob_u_w, extra = self.weak_pass(img_x, img_u_w)
        loss_x = self.supervised_loss(logits_x, mask_x)
        mask_u_w, keep = pseudo_labels(prob_u_w.detach(), self.threshold, self.labels)
        terms = self.unlabelled_losses(img_u_w, mask_u_w, keep, extra, mix)
        loss = (loss_x + sum(self.weights[k] * v for k, v in terms.items())) / 2
        logs: Logs = {"sup": loss_x.detach(), "mask_ratio": keep.mean(),
                      **{k: v.detach() for k, v in terms.items()}}
        return loss, logs
