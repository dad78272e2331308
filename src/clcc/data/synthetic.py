"""The embedded default data set: colour images with polyp-like blobs, made deterministically.

Each image is a reddish "mucosa" of smooth noise with one or two irregular blobs whose colour
and texture differ only moderately from the background (plus specular highlights and
distractor folds that are not foreground), so the task is learnable in a minute or two on a CPU
but not trivial. Written in the generic `folder` layout, so it goes through the same
preparation path as users' data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from clcc.errors import ClccError
from clcc.files import OUTPUT_MARKER, claim, mark, staged_into


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Noise in [0, 1] varying over roughly size/cells pixels (bilinear upsampling)."""
    coarse = rng.random((cells + 1, cells + 1)).astype(np.float32)
    img = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
    arr = np.asarray(img)
    return (arr - arr.min()) / (np.ptp(arr) + 1e-6)


def _blob(rng: np.random.Generator, size: int) -> np.ndarray:
    """An irregular star-shaped region: radius modulated by a few random harmonics."""
    cy, cx = rng.uniform(0.25, 0.75, 2) * size
    radius = rng.uniform(0.1, 0.22) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = np.arctan2(yy - cy, xx - cx)
    wobble = sum(
        rng.uniform(0, 0.18) * np.cos(k * angle + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)
    )
    stretch = rng.uniform(0.7, 1.3)
    dist = np.hypot((yy - cy) * stretch, (xx - cx) / stretch)
    return dist < radius * (1 + wobble)


def synth_case(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 RGB) and its mask (bool)."""
    rng = np.random.default_rng(seed)
    base = np.array([0.75, 0.35, 0.3]) + rng.uniform(-0.08, 0.08, 3)
    shade = 0.7 + 0.3 * _smooth_noise(rng, size, 4)
    image = base[None, None, :] * shade[..., None]
    folds = _smooth_noise(rng, size, 12)
    image *= (0.85 + 0.3 * np.abs(folds - 0.5))[..., None]  # folds: texture, not foreground
    mask = np.zeros((size, size), bool)
    for _ in range(rng.integers(1, 3)):
        mask |= _blob(rng, size)
    texture = _smooth_noise(rng, size, size // 6)
    tint = np.array([0.08, 0.1, 0.04]) * rng.uniform(0.6, 1.4)
    image[mask] = image[mask] * (0.95 + 0.2 * texture[mask][:, None]) + tint
    highlight = _smooth_noise(rng, size, 10) > 0.93
    image[highlight] = 0.95
    image += rng.normal(0, 0.03, image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), mask


CLASS_TINTS = np.array([[0.08, 0.1, 0.04], [-0.15, 0.05, 0.15], [0.15, -0.1, -0.1],
                        [-0.1, 0.15, -0.1]])
"""The colour shift of class 1, 2, … in a multi-class synthetic image (class 1 is the binary
set's tint)."""


def synth_label_case(seed: int, size: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One image and its label map (uint8, 0 … classes − 1): one blob per foreground class,
    each tinted in its own colour, later classes drawn over earlier ones."""
    rng = np.random.default_rng(seed)
    image = (np.array([0.75, 0.35, 0.3]) + rng.uniform(-0.08, 0.08, 3))[None, None, :] * (
        0.7 + 0.3 * _smooth_noise(rng, size, 4))[..., None]
    labels = np.zeros((size, size), np.uint8)
    for value in range(1, classes):
        blob = _blob(rng, size)
        labels[blob] = value
        image[blob] = image[blob] + CLASS_TINTS[(value - 1) % len(CLASS_TINTS)]
    image += rng.normal(0, 0.03, image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), labels


def write_synthetic(output: Path, count: int = 160, size: int = 96, seed: int = 0,
                    classes: int = 2) -> Path:
    """Write `count` cases as images/*.png and masks/*.png into a new or empty folder, or one
    this command wrote before (its other files stay). Two classes: binary masks (0/255), as
    always; more: label maps by value (0 … classes − 1), to prepare with `--classes`."""
    output = Path(output)
    if count < 1 or size < 8 or classes < 2:
        raise ClccError(f"data synth: need --count >= 1, --size >= 8 and --classes >= 2, got "
                        f"{count}, {size} and {classes}")
    claim(output, "data synth")
    with staged_into(output, last=OUTPUT_MARKER) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for i in range(count):
            if classes == 2:
                image, mask = synth_case(seed * 100_003 + i, size)
                mask = mask.astype(np.uint8) * 255
            else:
                image, mask = synth_label_case(seed * 100_003 + i, size, classes)
            Image.fromarray(image).save(tmp / "images" / f"synth_{i:04d}.png")
            Image.fromarray(mask).save(tmp / "masks" / f"synth_{i:04d}.png")
        mark(tmp, "data synth", count=count, size=size, seed=seed, classes=classes)
    return output
