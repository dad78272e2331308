"""Losses. The supervised ones here are binary (one logit channel, sigmoid); a multi-class
task's supervised loss and the class-wise losses live in `clcc.labels.LabelSpace`.

- `supervised_loss`: L_sup = ½(Dice + CE), eq. (4) of the CLCC paper, CE being binary
  cross-entropy on the logit; `authors_supervised_loss` (the CLCC authors' code) and
  `vnet_supervised_loss` (UA-MT's LA scripts) the forms other code trains with.
- `cross_level_contrastive_loss`, eq. (1), and `cross_level_consistency_loss`, eq. (2), with the
  patch geometry of `clcc.geometry` (`to_patches`) they share.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clcc.geometry import to_patches

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


def authors_supervised_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE (plain mean) + 1 − Dice computed per image with smooth 1, averaged over images,
    summed without the ½ of eq. (4): what the authors' public code trains with. Relative to
    eq. (4) it weighs the supervised term twice, so CLCC's α and β count half as much."""
    prob = torch.sigmoid(logits.float()).flatten(1)
    t = target.float().flatten(1)
    dice = (2 * (prob * t).sum(1) + 1) / (prob.sum(1) + t.sum(1) + 1)
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    return bce + (1 - dice).mean()


def vnet_supervised_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """½(CE + 1 − Dice) with the V-Net's Dice (Milletari et al. 2016), whose denominator sums
    *squared* probabilities, Σp² + Σt², pooled over the batch: UA-MT's `losses.dice_loss` on the
    foreground softmax channel, which its LA scripts (and the field's LA tables) train with."""
    prob = torch.sigmoid(logits.float())
    t = target.float()
    dice = (2 * (prob * t).sum() + SMOOTH) / ((prob * prob).sum() + (t * t).sum() + SMOOTH)
    bce = F.binary_cross_entropy_with_logits(logits.float(), t)
    return 0.5 * (bce + 1 - dice)


SUPERVISED_LOSSES = {"paper": supervised_loss, "authors": authors_supervised_loss,
                     "vnet": vnet_supervised_loss}


def cross_level_contrastive_loss(
    image_vectors: torch.Tensor,
    patch_vectors: torch.Tensor,
    tau: float = 0.07,
    negatives: str = "image",
    norm: int = 2,
) -> torch.Tensor:
    """Cross-level contrastive loss, eq. (1) of the CLCC paper, averaged over positions and images.

    `image_vectors` p(Z)_i and `patch_vectors` p(z_i) are (B, N, D) with N = n² positions. For
    query p(Z)_i the positive is p(z_i). Negatives:
    - "image" (eq. 1): the full-image vectors p(Z)_n, n ≠ i, of the same image;
    - "patch" (the authors' code): the patch vectors p(z_n), n ≠ i.
    Vectors are normalised with the L`norm` norm (2: cosine similarity, standard for InfoNCE;
    the authors' code uses 1).
    """
    q = F.normalize(image_vectors.float(), p=norm, dim=-1)
    k = F.normalize(patch_vectors.float(), p=norm, dim=-1)
    if negatives == "patch":
        logits = q @ k.transpose(1, 2)
    elif negatives == "image":
        logits = q @ q.transpose(1, 2)  # off-diagonal: q_i·q_n, the negatives of eq. (1)
        eye = torch.eye(q.shape[1], dtype=torch.bool, device=q.device)
        logits = torch.where(eye, (q * k).sum(-1).diag_embed(), logits)  # diagonal: q_i·k_i
    else:
        raise ValueError(f"negatives must be 'image' or 'patch', got {negatives!r}")
    b, n, _ = logits.shape
    target = torch.arange(n, device=q.device).repeat(b)
    return F.cross_entropy(logits.reshape(b * n, n) / tau, target)


def cross_level_consistency_loss(
    patch_probs: torch.Tensor, image_probs: torch.Tensor, n: int, reduce: str = "sum"
) -> torch.Tensor:
    """Cross-level consistency, eq. (2): Σ_i MSE(h(z_i), h(Z)_i) on probabilities (the sigmoid
    of a binary task, the softmax of a multi-class one: `LabelSpace.probabilities`).

    `patch_probs` (B·n²,heads,P,P) come from the patches fed alone; `image_probs`
    (B,heads,nP,nP) from the full image. The full-image side is detached: it sees the whole
    context and is the target the context-free patch predictions are pulled towards (as in the
    authors' code). Each position's MSE is a mean over its pixels, channels and the batch;
    "sum" adds the n² positions as eq. (2) does, "mean" averages them.
    """
    target = to_patches(image_probs.detach(), n)
    positions = n ** (patch_probs.dim() - 2)  # n² patches of an image, n³ of a volume
    per_position = (patch_probs - target).pow(2)
    per_position = per_position.reshape(-1, positions, *per_position.shape[1:])
    per_position = per_position.mean(dim=[0, *range(2, per_position.dim())])
    if reduce == "sum":
        return per_position.sum()
    if reduce == "mean":
        return per_position.mean()
    raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
