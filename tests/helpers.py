"""Small image files written by tests (no real data in the repository)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_pair(image_path: Path, mask_path: Path | None, size=(24, 16), seed: int = 0) -> None:
    """A random RGB image of `size` (width, height) and a rectangular 0/255 mask."""
    rng = np.random.default_rng(seed)
    width, height = size
    image_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(image_path)
    if mask_path is not None:
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        mask = np.zeros((height, width), np.uint8)
        mask[height // 4 : height // 2, width // 4 : width // 2] = 255
        Image.fromarray(mask).save(mask_path)
