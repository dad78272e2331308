"""Losses, binary segmentation throughout (one logit channel, sigmoid).

- `supervised_loss`: L_sup = ½(Dice + CE), eq. (4) of the CLCC paper, CE being binary
  cross-entropy on the logit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SMOOTH = 1e-5


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − soft Dice of the sigmoid probabilities, pooled over the whole batch."""
    prob = torch.sigmoid(logits.float())
    target = target.float()
    intersection = (prob * target).sum()
    return 1 - (2 * intersection + SMOOTH) / (prob.sum() + target.sum() + SMOOTH)


def supervised_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """½(Dice + BCE), eq. (4)."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    return 0.5 * (dice_loss(logits, target) + bce)
