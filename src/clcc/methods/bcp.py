"""BCP, Bidirectional Copy-Paste (Bai et al., CVPR 2023), as its 2-D script trains it
(DeepMed-Lab-ECNU/BCP, `code/ACDC_BCP_train.py`).

One box per step, 2/3 of the image side at a random place (a cube of 2/3 of each side of a
volume patch, as `LA_BCP_train.py`'s `context_mask`), shared by the batch; `m` is 1
outside it and 0 inside. The labelled half-batches are img_a, img_b, the unlabelled ones
uimg_a, uimg_b (2 + 2 and 2 + 2 images at 4 + 4).
- Stage 1, pre-training (the first `pretrain` of training, 10 000 of 40 000 iterations in the
  script): labelled images only, img_a·m + img_b·(1 − m) against the labels mixed alike.
- Stage 2, self-training: a mean teacher (EMA 0.99 of parameters and BatchNorm buffers, started
  from the student at the stage switch) predicts pseudo-labels of uimg_a, uimg_b (the argmax, then
  each image's largest connected component, as `get_ACDC_masks(nms=1)`). The student sees
  uimg_a·m + img_a·(1 − m) (a labelled box pasted into an unlabelled image) and
  img_b·m + uimg_b·(1 − m) (the reverse), each against the labels and pseudo-labels mixed
  alike (`passes`); pseudo-labelled pixels weigh `u_weight` (0.5), labelled ones 1.
Each loss is ½(Σ Dice + Σ CE) over the two regions of each mixed image, Dice being the
Dice over the classes of the region's pixels and CE the region's mean cross-entropy (a binary
task's BCE), as the script's `mix_loss`.
`passes="joint"` (default) runs the step's mixed images through the student in one pass (4
images), and pre-training mixes each labelled pair both ways (4 images, as the other methods'
labelled batch); `"separate"` runs each mixed half-batch on its own, as the script does with 6
images a pass at its 12 + 12, which at the engine's 4 + 4 leaves BatchNorm the statistics of 2
images: on Kvasir's quick protocol (selection 0, validation Dice) pre-training then swung
between 19 and 37 (joint: 30–43) and the last 10 validations averaged 37.5 (joint: 47.7; best
45.9 against 49.7; docs/results.md).

`losses` says which of BCP's scripts the losses follow. `acdc` (the default): its 2-D
script's, Dice over the classes of the region's pixels of the whole batch (squared sums below,
SSL4MIS's `DiceLoss`), and `mix_loss` in pre-training too. `la`: its 3-D script's,
`LA_BCP_train.py` (what `configs/la*.yaml` runs of BCP use): Dice per image and class, Σp + Σt
below, averaged (`mask_DiceLoss`), and pre-training on the whole mixed image, ½(CE + Dice)
against the mixed labels.

Adaptations, stated: joint passes (above); one run holds both stages (the script trains a
second run from the pre-training's best checkpoint; here the student simply goes on, and
`best.pt` is chosen on validation over the whole run); the teacher normalises with batch
statistics without updating its own (as Mean Teacher here); the U-Net carries the
script's (= SSL4MIS's) encoder dropout; AdamW, batches and schedule are the engine's.
"""

from __future__ import annotations

import copy
from typing import Literal

import numpy as np
import torch
from torch import nn

from clcc.geometry import box_mask
from clcc.labels import BINARY, SMOOTH, LabelSpace
from clcc.methods.base import Batch, Logs, Method, ema_update, register
from clcc.metrics import keep_largest_components
from clcc.models.norm import frozen_bn_statistics
from clcc.models.unet import SSL4MIS_DROPOUT, UNet


def largest_component(labels: torch.Tensor) -> torch.Tensor:
    """Per image and foreground class, its largest connected component, 8-connected in 2-D (as
    BCP's `get_ACDC_2DLargestCC` with skimage's 2-D `label`), 26-connected in 3-D (its LA
    script's `LargestCC`); everything else becomes background. (B,1,…) float label maps in and
    out."""
    maps = labels[:, 0].cpu().numpy().astype(np.int64)
    out = np.stack([keep_largest_components(image) for image in maps])[:, None]
    return torch.from_numpy(out.astype(np.float32)).to(labels.device)


def per_image_dice_loss(labels: LabelSpace, probs: torch.Tensor, target: torch.Tensor,
                        keep: torch.Tensor) -> torch.Tensor:
    """1 − Dice of each image and class over the pixels where `keep` is 1, with Σp + Σt
    below, averaged over images and classes (BCP's LA `mask_DiceLoss`, background included)."""
    full, one_hot = labels.distribution(probs), labels.one_hot(target)
    keep = keep.float().expand_as(full[:, :1])
    axes = tuple(range(2, full.dim()))
    overlap = (full * one_hot * keep).sum(axes)
    total = ((full + one_hot) * keep).sum(axes)
    return 1 - ((2 * overlap + SMOOTH) / (total + SMOOTH)).mean()


DICE_OF = {"acdc": LabelSpace.masked_dice_loss, "la": per_image_dice_loss}
"""The Dice each of BCP's scripts trains with: its 2-D script's, its LA script's."""


def mix_loss(logits: torch.Tensor, target_out: torch.Tensor, target_in: torch.Tensor,
             outside: torch.Tensor, weight_out: float, weight_in: float,
             labels: LabelSpace = BINARY, losses: Literal["acdc", "la"] = "acdc"
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(Dice, CE) of a mixed image: `target_out` where `outside` is 1, `target_in` in the box,
    each region weighted; the Dice of the script `losses` names."""
    prob, dice_loss = labels.probabilities(logits), DICE_OF[losses]
    inside = 1 - outside
    dice = (weight_out * dice_loss(labels, prob, target_out, outside)
            + weight_in * dice_loss(labels, prob, target_in, inside))
    ce = prob.new_zeros(())
    for target, region, weight in ((target_out, outside, weight_out),
                                   (target_in, inside, weight_in)):
        pixel_ce = labels.pixel_ce(logits, target)
        pixels = region.expand_as(pixel_ce)
        ce = ce + weight * (pixel_ce * pixels).sum() / (pixels.sum() + 1e-16)
    return dice, ce


@register("bcp")
class BCP(Method):
    default_dropout = SSL4MIS_DROPOUT

    def __init__(
        self,
        model: UNet,
        image_size: int | tuple[int, ...],
        pretrain: float = 0.25,
        u_weight: float = 0.5,
        ema_decay: float = 0.99,
        box: float = 2 / 3,
        evaluate: Literal["student", "teacher"] = "student",
        passes: Literal["separate", "joint"] = "joint",
        losses: Literal["acdc", "la"] = "acdc",
    ) -> None:
        super().__init__(model, image_size)
        if not 0 <= pretrain < 1 or u_weight < 0 or not 0 <= ema_decay < 1 or not 0 < box < 1:
            raise ValueError(f"need 0 <= pretrain < 1, u_weight >= 0, 0 <= ema_decay < 1, "
                             f"0 < box < 1; got {pretrain}, {u_weight}, {ema_decay}, {box}")
        self.pretrain, self.u_weight, self.ema_decay, self.box = pretrain, u_weight, ema_decay, box
        self.evaluate, self.passes, self.losses = evaluate, passes, losses
        self.teacher = copy.deepcopy(model).requires_grad_(False)
        self.register_buffer("teacher_started", torch.zeros((), dtype=torch.bool))
        self.self_training = False

    def eval_model(self) -> nn.Module:
        return self.teacher if self.evaluate == "teacher" else self.model

    def _mixed(self, inside_from: torch.Tensor, outside_from: torch.Tensor,
               outside: torch.Tensor) -> torch.Tensor:
        m = outside.to(inside_from)
        return outside_from * m + inside_from * (1 - m)

    def training_step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, Logs]:
        img, lab, uimg = batch["image"], batch["mask"], batch["image_u"]
        half = len(img) // 2
        img_a, img_b, lab_a, lab_b = img[:half], img[half:], lab[:half], lab[half:]
        outside = box_mask(tuple(img.shape[2:]), self.box).to(img.device)
        self.self_training = progress >= self.pretrain
        if not self.self_training:
            if self.passes == "joint":  # each pair mixed both ways: 4 images, not 2
                img_a, img_b = torch.cat([img_a, img_b]), torch.cat([img_b, img_a])
                lab_a, lab_b = torch.cat([lab_a, lab_b]), torch.cat([lab_b, lab_a])
            logits = self.model(self._mixed(img_b, img_a, outside)).logits
            loss = self._pretraining_loss(logits, lab_a, lab_b, outside)
            return loss, {"sup": loss.detach(), "stage": torch.ones((), device=img.device)}
        self._start_teacher()
        # one unlabelled image per labelled one, as the script pairs them (an epoch's last
        # labelled batch may be short; the unlabelled stream never is)
        uimg_a, uimg_b = uimg[:half], uimg[half : len(img)]
        with torch.no_grad(), frozen_bn_statistics(self.teacher):
            plab_a = largest_component(self.labels.segment(self.teacher(uimg_a).logits))
            plab_b = largest_component(self.labels.segment(self.teacher(uimg_b).logits))
        out_unl, out_l = self._logits(self._mixed(img_a, uimg_a, outside),  # labelled box in
                                      self._mixed(uimg_b, img_b, outside))  # unlabelled box in
        dice_u, ce_u = mix_loss(out_unl, plab_a, lab_a, outside, self.u_weight, 1.0,
                                self.labels, self.losses)
        dice_l, ce_l = mix_loss(out_l, lab_b, plab_b, outside, 1.0, self.u_weight,
                                self.labels, self.losses)
        loss = (dice_u + dice_l + ce_u + ce_l) / 2
        return loss, {"unl": ((dice_u + ce_u) / 2).detach(), "sup": ((dice_l + ce_l) / 2).detach(),
                      "stage": torch.full((), 2.0, device=img.device)}

    def _pretraining_loss(self, logits: torch.Tensor, lab_a: torch.Tensor, lab_b: torch.Tensor,
                          outside: torch.Tensor) -> torch.Tensor:
        """½(Dice + CE) of the mixed labelled images: each region's (`acdc`), or the whole
        image's against the mixed labels (`la`)."""
        if self.losses == "acdc":
            dice, ce = mix_loss(logits, lab_a, lab_b, outside, 1.0, 1.0, self.labels)
            return (dice + ce) / 2
        mixed = self._mixed(lab_b, lab_a, outside)
        whole = torch.ones_like(outside)
        dice = per_image_dice_loss(self.labels, self.labels.probabilities(logits), mixed, whole)
        return (dice + self.labels.pixel_ce(logits, mixed).mean()) / 2

    def _logits(self, *images: torch.Tensor) -> list[torch.Tensor]:
        """The student's logits of each mixed batch: a pass each, as the script, or one pass
        over all of them ("joint": BatchNorm's batch statistics over the step's 4 images)."""
        if self.passes == "separate":
            return [self.model(x).logits for x in images]
        return list(self.model(torch.cat(images)).logits.split([len(x) for x in images]))

    @torch.no_grad()
    def _start_teacher(self) -> None:
        """At the first self-training step the teacher becomes the pre-trained student."""
        if not bool(self.teacher_started):
            self.teacher.load_state_dict(self.model.state_dict())
            self.teacher_started.fill_(True)

    def after_step(self, step: int) -> None:
        if self.self_training:
            ema_update(self.teacher, self.model, self.ema_decay)
