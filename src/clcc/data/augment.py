"""Batched augmentation on the training device: random flips and 90° rotations per sample,
applied identically to an image and its mask.

It works on the uint8 channels-last batches the loader yields, before the float conversion, so
it moves a quarter of the bytes it would move on float tensors. The random choices come from a
CPU generator (reproducible, resumable); only the pixel work runs on the device.
"""

from __future__ import annotations

import torch

AUGMENTATIONS = ("dihedral", "authors")


def _draws(batch: int, kind: str, generator: torch.Generator) -> list[tuple[bool, bool, int]]:
    """Per sample (horizontal flip, vertical flip, quarter turns).

    dihedral: a flip with p 0.5 and 0–3 turns, uniform over the 8 elements of the group.
    authors: HFlip, VFlip and RandomRotate90 (0–3 turns) at p 0.5 each, as the CLCC authors'
    albumentations pipeline: the identity has probability 3/16, not 1/8.
    """
    if kind == "dihedral":
        flips = (torch.rand(batch, generator=generator) < 0.5).tolist()
        turns = torch.randint(0, 4, (batch,), generator=generator).tolist()
        return [(f, False, k) for f, k in zip(flips, turns, strict=True)]
    if kind != "authors":
        raise ValueError(f"unknown augmentation {kind!r}; choose {' or '.join(AUGMENTATIONS)}")
    h, v, r = (torch.rand(3, batch, generator=generator) < 0.5).tolist()
    turns = torch.randint(0, 4, (batch,), generator=generator).tolist()
    return [(a, b, k if c else 0) for a, b, c, k in zip(h, v, r, turns, strict=True)]


def random_flips_and_turns(
    tensors: list[torch.Tensor], generator: torch.Generator, kind: str = "dihedral"
) -> list[torch.Tensor]:
    """The same per-sample random flips and rotation applied to each (B,H,W,...) tensor of
    `tensors` (square images, masks)."""
    outs = [torch.empty_like(x) for x in tensors]
    for i, (hflip, vflip, k) in enumerate(_draws(tensors[0].shape[0], kind, generator)):
        for x, out in zip(tensors, outs, strict=True):
            sample = x[i].flip(1) if hflip else x[i]
            sample = sample.flip(0) if vflip else sample
            out[i] = torch.rot90(sample, k, dims=(0, 1)) if k else sample
    return outs


def augment_batch(batch: dict[str, torch.Tensor], generator: torch.Generator,
                  kind: str = "dihedral") -> None:
    """In place, on uint8 {"image": (B,H,W,3), "mask": (B,H,W), "image_u"}: labelled images
    with their masks together, unlabelled images on their own."""
    batch["image"], batch["mask"] = random_flips_and_turns(
        [batch["image"], batch["mask"]], generator, kind)
    if "image_u" in batch:
        (batch["image_u"],) = random_flips_and_turns([batch["image_u"]], generator, kind)
