"""Where images and volumes differ, once: the patches CLCC cuts, the CutMix boxes FixMatch
and UniMatch paste, BCP's copy-paste box. Each takes a 2-D shape (H, W) or tensor (B, C, H, W)
and a 3-D one (D, H, W) or (B, C, D, H, W) alike, so no method asks which it was given.
Random choices come from torch's CPU generator, which the trainer checkpoints: a resumed run
draws them again exactly.
"""

from __future__ import annotations

import math

import torch


def uniform(n: int, low: float, high: float) -> torch.Tensor:
    """`n` draws of U(low, high) on the CPU generator (resumable)."""
    return torch.empty(n).uniform_(low, high)


def to_patches(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B,C,H,W) → (B·n²,C,H/n,W/n): n×n non-overlapping patches, row-major per image; a
    volume (B,C,D,H,W) → (B·n³,C,D/n,H/n,W/n), n×n×n sub-volumes in the same order."""
    b, c, *sides = x.shape
    if any(s % n for s in sides):
        raise ValueError(f"image {'x'.join(map(str, sides))} cannot be cut into "
                         f"{'x'.join([str(n)] * len(sides))} equal patches")
    d, parts = len(sides), [s // n for s in sides]
    split = [v for p in parts for v in (n, p)]  # n, P1, n, P2, …
    order = [0, *range(2, 2 + 2 * d, 2), 1, *range(3, 3 + 2 * d, 2)]
    return x.reshape(b, c, *split).permute(order).reshape(b * n**d, c, *parts)


def from_patches(p: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of `to_patches`."""
    bn, c, *parts = p.shape
    d = len(parts)
    b = bn // n**d
    order = [0, d + 1, *(v for k in range(d) for v in (1 + k, d + 2 + k))]
    return p.reshape(b, *[n] * d, c, *parts).permute(order).reshape(
        b, c, *(n * q for q in parts))


def cutmix_boxes(b: int, shape: tuple[int, ...], p: float = 0.5,
                 area: tuple[float, float] = (0.02, 0.4),
                 ratio: tuple[float, float] = (0.3, 1 / 0.3)) -> torch.Tensor:
    """(B, *shape) 0/1 masks: with probability `p` one box per image, else none. A square
    image's box as UniMatch draws it; a volume's, a cube holding the drawn share of voxels."""
    if len(shape) == 3:
        return _cutmix_cubes(b, shape, p, area)
    size = shape[-1]
    boxes = torch.zeros(b, size, size)
    for i in range(b):
        if float(torch.rand(())) > p:
            continue
        target = float(uniform(1, *area)) * size * size
        while True:
            r = float(uniform(1, *ratio))
            w, h = int(math.sqrt(target / r)), int(math.sqrt(target * r))
            x0, y0 = int(torch.randint(0, size, ())), int(torch.randint(0, size, ()))
            if x0 + w <= size and y0 + h <= size:
                break
        boxes[i, y0 : y0 + h, x0 : x0 + w] = 1
    return boxes


def _cutmix_cubes(b: int, shape: tuple[int, ...], p: float, area: tuple[float, float]
                  ) -> torch.Tensor:
    boxes = torch.zeros(b, *shape)
    for i in range(b):
        if float(torch.rand(())) > p:
            continue
        side = float(uniform(1, *area)) ** (1 / 3)  # of each axis: the cube's share
        sides = [max(1, int(side * s)) for s in shape]
        starts = [int(torch.randint(0, s - k + 1, ())) for s, k in zip(shape, sides,
                                                                      strict=True)]
        boxes[(i, *(slice(a, a + k) for a, k in zip(starts, sides, strict=True)))] = 1
    return boxes


def paste(base: torch.Tensor, source: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """`base` with `source` inside each image's box; (B,H,W) boxes broadcast over channels, so
    images (B,C,H,W), probability maps and labels mix alike."""
    inside = boxes.to(base.device, base.dtype)
    inside = inside.unsqueeze(1) if base.dim() == inside.dim() + 1 else inside
    return base * (1 - inside) + source * inside


def box_mask(shape: tuple[int, ...], side: float = 2 / 3) -> torch.Tensor:
    """`shape` (H, W) or (D, H, W): 0 inside one random box of `side` × each side, 1
    elsewhere (BCP's `img_mask` in 2-D, its LA script's `context_mask` cube in 3-D)."""
    if len(shape) == 3:
        sides = [int(s * side) for s in shape]
        starts = [int(torch.randint(0, s - k, ())) for s, k in zip(shape, sides, strict=True)]
        mask = torch.ones(shape)
        mask[tuple(slice(a, a + k) for a, k in zip(starts, sides, strict=True))] = 0
        return mask
    size = shape[-1]
    patch = int(size * side)
    top, left = (int(v) for v in torch.randint(0, size - patch, (2,)))
    mask = torch.ones(size, size)
    mask[top : top + patch, left : left + patch] = 0
    return mask
