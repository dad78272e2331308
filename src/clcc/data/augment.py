"""Batched augmentation on the training device: a random element of the dihedral group (flip ×
90° rotation) per sample, applied identically to an image and its mask.

The random choices come from a CPU generator (reproducible, resumable); only the pixel work
runs on the device.
"""

from __future__ import annotations

import torch


def random_dihedral(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random flip and rotation of a (B,C,H,W) batch of square images."""
    flips = (torch.rand(x.shape[0], generator=generator) < 0.5).tolist()
    turns = torch.randint(0, 4, (x.shape[0],), generator=generator).tolist()
    out = torch.empty_like(x)
    for i, (flip, k) in enumerate(zip(flips, turns, strict=True)):
        sample = x[i].flip(-1) if flip else x[i]
        out[i] = torch.rot90(sample, k, dims=(-2, -1)) if k else sample
    return out


def augment_batch(batch: dict[str, torch.Tensor], generator: torch.Generator) -> None:
    """In place: labelled images with their masks together, unlabelled images on their own."""
    image, mask = batch["image"], batch["mask"]
    joint = random_dihedral(torch.cat([image, mask], dim=1), generator)
    batch["image"], batch["mask"] = joint[:, : image.shape[1]], joint[:, image.shape[1] :]
    if "image_u" in batch:
        batch["image_u"] = random_dihedral(batch["image_u"], generator)
