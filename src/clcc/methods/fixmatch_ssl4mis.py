"""FixMatch as SSL4MIS trains it (HiLab-git/SSL4MIS, `code/train_fixmatch_standard_augs.py`):
a recipe of its own, not UniMatch's FixMatch (`fixmatch`), available so that the script can
be run beside clcc and a user can train either.

Per step, every image of the batch (labelled `img_x` first, then unlabelled) has a weak view
`img_w` (the engine's flips: `train.flips: reflections` is the script's `random_rot_flip`) and a
strong view `img_s`, the weak one colour-jittered (torchvision's `ColorJitter(0.8, 0.8, 0.8,
0.2)` with probability 1, no blur, no CutMix; a grey slice gets brightness and contrast only).
Both views go through the network in passes of their own. Then:

- pseudo-labels `mask_u_w`: each weak pixel's class probabilities min-max normalised over the
  classes, (p − min) / max; classes at or below `threshold` (0.8) zeroed; the argmax of what
  is left, so a pixel with no class left is labelled background (not ignored);
- loss_x = CE + Dice on the labelled weak predictions (the script's sum; its other scripts
  halve it), loss_u_s = CE + Dice of the unlabelled strong predictions against `mask_u_w`;
- a complementary loss on every image: CE of the logits 1 − p_strong against the weak
  prediction's least likely class, times w² where w = 1 − the mean over (image, class) of
  the entropy of that class's probability map normalised over the pixels, / ln(pixels)
  (w carries gradients, as in the script);
- loss = loss_x + consistency · sigmoid_rampup · (loss_u_s + loss_comp), the ramp
  SSL4MIS's: over `rampup` runs (`rampup=20` at 1 500 iterations is its 200 × 150).

The script also keeps an EMA of the network that nothing reads (its comment says it makes the
pseudo-labels; the loop takes them from the network itself): left out. Its 'Dice' is
`DiceLoss(n_classes)` with squared sums, as `LabelSpace.masked_dice_loss`; CE + Dice is twice
clcc's L_sup. Its torchvision jitter applies its factors in a random order, clcc's in a fixed
one (`clcc.data.strong`). A binary task runs the same rules on its two-class distribution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from clcc.data.strong import strong_view
from clcc.methods.base import Batch, Logs, Method, all_images, register
from clcc.methods.ramps import sigmoid_rampup
from clcc.models.unet import SSL4MIS_DROPOUT, UNet

JITTER = {"p": 1.0, "strength": 0.8, "hue": 0.2, "blur": 0.0}
"""`ColorJitter(0.8, 0.8, 0.8, 0.2)` on every image, nothing else."""


def normalised_pseudo_labels(full: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, 1, …) label map from (B, C, …) class probabilities: the argmax of those whose
    (p − min) / max over the classes exceeds `threshold`, background where none does."""
    low, high = full.amin(1, keepdim=True), full.amax(1, keepdim=True)
    kept = full * ((full - low) / high > threshold)
    return kept.argmax(1, keepdim=True).float()


def sharpness_weight(full: torch.Tensor) -> torch.Tensor:
    """1 − mean over (image, class) of the entropy of the class's probability map, taken as a
    distribution over the pixels, divided by ln(pixels): 0 for flat maps, 1 for one-pixel
    ones. `full`: (B, C, …) class probabilities."""
    maps = full.flatten(2)
    maps = maps / maps.sum(-1, keepdim=True)
    entropy = -torch.special.xlogy(maps, maps).sum(-1)
    return 1 - (entropy / math.log(maps.shape[-1])).mean()


@register("fixmatch-ssl4mis")
class SSL4MISFixMatch(Method):
    default_dropout = SSL4MIS_DROPOUT

    def __init__(self, model: UNet, image_size: int | tuple[int, ...], threshold: float = 0.8,
                 consistency: float = 0.1, rampup: float = 1.0) -> None:
        super().__init__(model, image_size)
        if not 0 <= threshold < 1 or consistency < 0 or rampup < 0:
            raise ValueError(f"need 0 <= threshold < 1 and consistency, rampup >= 0; got "
                             f"{threshold}, {consistency}, {rampup}")
        self.threshold, self.consistency, self.rampup = threshold, consistency, rampup

    def training_step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, Logs]:
        n_x = len(batch["image"])
        img_w = all_images(batch)
        img_s = strong_view(img_w, **JITTER)
        logits_w, logits_s = self.model(img_w).logits, self.model(img_s).logits
        full_w = self.labels.distribution(self.labels.probabilities(logits_w).detach())
        full_s = self.labels.distribution(self.labels.probabilities(logits_s))
        mask_u_w = normalised_pseudo_labels(full_w[n_x:], self.threshold)
        loss_x = 2 * self.supervised_loss(logits_w[:n_x], batch["mask"])
        loss_u_s = 2 * self.supervised_loss(logits_s[n_x:], mask_u_w)
        least_likely = full_w.argmin(1)
        weight_s = sharpness_weight(full_s)
        loss_comp = weight_s ** 2 * F.cross_entropy(1 - full_s, least_likely)
        weight = self.consistency * sigmoid_rampup(progress, self.rampup)
        loss = loss_x + weight * (loss_u_s + loss_comp)
        logs: Logs = {"sup": loss_x.detach(), "loss_u_s": loss_u_s.detach(),
                      "loss_comp": loss_comp.detach(), "sharpness": weight_s.detach(),
                      "background_pseudo": (mask_u_w == 0).float().mean()}
        return loss, logs
