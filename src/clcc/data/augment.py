"""Batched augmentation on the training device: a random element of the dihedral group (flip ×
90° rotation) per sample, applied identically to an image and its mask.

It works on the uint8 channels-last batches the loader yields, before the float conversion, so
it moves a quarter of the bytes it would move on float tensors. The random choices come from a
CPU generator (reproducible, resumable); only the pixel work runs on the device.
"""

from __future__ import annotations

import torch


def random_dihedral(
    tensors: list[torch.Tensor], generator: torch.Generator
) -> list[torch.Tensor]:
    """The same per-sample random flip and rotation applied to each (B,H,W,...) tensor of
    `tensors` (square images, masks)."""
    flips = (torch.rand(tensors[0].shape[0], generator=generator) < 0.5).tolist()
    turns = torch.randint(0, 4, (tensors[0].shape[0],), generator=generator).tolist()
    outs = [torch.empty_like(x) for x in tensors]
    for i, (flip, k) in enumerate(zip(flips, turns, strict=True)):
        for x, out in zip(tensors, outs, strict=True):
            sample = x[i].flip(1) if flip else x[i]
            out[i] = torch.rot90(sample, k, dims=(0, 1)) if k else sample
    return outs


def augment_batch(batch: dict[str, torch.Tensor], generator: torch.Generator) -> None:
    """In place, on uint8 {"image": (B,H,W,3), "mask": (B,H,W), "image_u"}: labelled images
    with their masks together, unlabelled images on their own."""
    batch["image"], batch["mask"] = random_dihedral([batch["image"], batch["mask"]], generator)
    if "image_u" in batch:
        (batch["image_u"],) = random_dihedral([batch["image_u"]], generator)
