"""Batched augmentation on the training device: random flips and 90° rotations per sample (and
SSL4MIS's small rotations), applied identically to an image and its mask.

It works on the uint8 channels-last batches the loader yields, before the float conversion, so
it moves a quarter of the bytes it would move on float tensors. The random choices come from a
CPU generator (reproducible, resumable); only the pixel work runs on the device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("dihedral", "authors", "ssl4mis", "reflections")
ROTATION_DEGREES = 20  # SSL4MIS's `random_rotate`: an integer angle in [−20, 20)


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


def _ssl4mis_draws(batch: int, generator: torch.Generator
                   ) -> tuple[list[tuple[bool, bool, int]], list[int]]:
    """SSL4MIS's `RandomGenerator`: with p 0.5 `random_rot_flip` (0–3 turns, then a flip
    along one axis: always one of the 4 reflections), else with p 0.5 `random_rotate`; the
    per-sample (flips, turns) and angles in degrees (0: none)."""
    first, second = (torch.rand(2, batch, generator=generator) < 0.5).tolist()
    reflections = _reflection_draws(batch, generator)
    angles = torch.randint(-ROTATION_DEGREES, ROTATION_DEGREES, (batch,),
                           generator=generator).tolist()
    flips = [r if f else (False, False, 0) for f, r in zip(first, reflections, strict=True)]
    return flips, [0 if f else (d if r else 0)
                   for f, r, d in zip(first, second, angles, strict=True)]


def _reflection_draws(batch: int, generator: torch.Generator) -> list[tuple[bool, bool, int]]:
    """SSL4MIS's `random_rot_flip` alone, as its FixMatch scripts' `WeakStrongAugment` weakly
    augments every image: 0–3 turns, then a flip along one axis (the identity never)."""
    turns = torch.randint(0, 4, (batch,), generator=generator).tolist()
    axes = torch.randint(0, 2, (batch,), generator=generator).tolist()
    return [(a == 1, a == 0, k) for a, k in zip(axes, turns, strict=True)]


def rotate(x: torch.Tensor, degrees: list[int]) -> torch.Tensor:
    """Each (H, W, …) sample of `x` turned about its centre by its angle, nearest neighbour,
    zeros outside (as `scipy.ndimage.rotate(order=0, reshape=False)`); dtype kept."""
    chosen = [i for i, d in enumerate(degrees) if d]
    if not chosen:
        return x
    planes = x[chosen].float()
    planes = planes.unsqueeze(-1) if planes.dim() == 3 else planes  # (n, H, W, C)
    radians = torch.tensor([degrees[i] for i in chosen], dtype=torch.float32) * math.pi / 180
    cos, sin = radians.cos(), radians.sin()
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
                         torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1).to(x.device)
    nchw = planes.permute(0, 3, 1, 2)
    grid = F.affine_grid(theta, list(nchw.shape), align_corners=False)
    turned = F.grid_sample(nchw, grid, mode="nearest", padding_mode="zeros",
                           align_corners=False).permute(0, 2, 3, 1)
    out = x.clone()
    out[chosen] = turned.reshape(x[chosen].shape).round().to(x.dtype)
    return out


def random_flips_and_turns(
    tensors: list[torch.Tensor], generator: torch.Generator, kind: str = "dihedral"
) -> list[torch.Tensor]:
    """The same per-sample random flips and rotation applied to each (B,H,W,...) tensor of
    `tensors` (square images, masks)."""
    batch = tensors[0].shape[0]
    if kind == "ssl4mis":
        draws, degrees = _ssl4mis_draws(batch, generator)
    elif kind == "reflections":
        draws, degrees = _reflection_draws(batch, generator), [0] * batch
    else:
        draws, degrees = _draws(batch, kind, generator), [0] * batch
    outs = [torch.empty_like(x) for x in tensors]
    for i, (hflip, vflip, k) in enumerate(draws):
        for x, out in zip(tensors, outs, strict=True):
            sample = x[i].flip(1) if hflip else x[i]
            sample = sample.flip(0) if vflip else sample
            out[i] = torch.rot90(sample, k, dims=(0, 1)) if k else sample
    return [rotate(out, degrees) for out in outs]


def augment_batch(batch: dict[str, torch.Tensor], generator: torch.Generator,
                  kind: str = "dihedral") -> None:
    """In place, on uint8 {"image": (B,H,W,3), "mask": (B,H,W), "image_u"}: labelled images
    with their masks together, unlabelled images on their own."""
    batch["image"], batch["mask"] = random_flips_and_turns(
        [batch["image"], batch["mask"]], generator, kind)
    if "image_u" in batch:
        (batch["image_u"],) = random_flips_and_turns([batch["image_u"]], generator, kind)
