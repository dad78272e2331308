"""Decoding images and masks into plain arrays, with the checks that catch bad files early.

Every function raises `ClccError` naming the file, so a bad case in a folder of thousands is
found at once. Images become 8-bit RGB whatever they were stored as (grayscale, RGBA, 16-bit,
palette); EXIF orientation is applied, as a viewer would show the picture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clcc.errors import ClccError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_THRESHOLD = 127
"""A mask pixel is foreground when its (0-255 scaled) value exceeds this; JPEG masks need it."""
MAX_AMBIGUOUS_FRACTION = 0.05
"""A mask with more than this fraction of mid-grey pixels is not a binary mask (JPEG ringing
around edges stays far below it)."""


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except Image.DecompressionBombError as err:
        raise ClccError(f"{path}: image too large to decode safely ({err})") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ClccError(f"{path}: cannot read image ({err})") from err
    return ImageOps.exif_transpose(img)


def _pixels(img: Image.Image, path: Path) -> tuple[np.ndarray, float]:
    """Pixel values as float32 (H, W, C) without alpha, and the value that means full scale."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("1", "CMYK", "YCbCr"):
        img = img.convert("RGB")
    if img.mode.startswith("I;16") or img.mode == "I":
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
    elif img.mode == "F":  # float: in [0, 1], or holding 8- or 16-bit values
        arr = np.asarray(img, dtype=np.float32)
        peak = float(np.nanmax(arr)) if arr.size else 0.0
        top = 1.0 if peak <= 1 else 255.0 if peak <= 255 else 65535.0
    elif img.mode in ("L", "LA", "RGB", "RGBA"):
        arr, top = np.asarray(img, dtype=np.float32), 255.0
    else:
        raise ClccError(f"{path}: unsupported image mode {img.mode!r}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] in (2, 4):  # LA / RGBA: drop alpha
        arr = arr[..., :-1]
    return arr, top


def read_image(path: Path) -> np.ndarray:
    """An image as uint8 RGB (H, W, 3); alpha is dropped, grey is replicated."""
    path = Path(path)
    arr, top = _pixels(_open(path), path)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.round(np.clip(arr / top, 0, 1) * 255).astype(np.uint8)


def _open_mask(path: Path, expected_size: tuple[int, int] | None) -> Image.Image:
    """A mask file, refused when its size is not its image's (width, height)."""
    img = _open(path)
    if expected_size is not None and img.size != tuple(expected_size):
        w, h = img.size
        raise ClccError(
            f"{path}: mask is {w}x{h} but its image is {expected_size[0]}x{expected_size[1]}"
        )
    return img


def _palette_mask(img: Image.Image, path: Path) -> np.ndarray:
    """A palette mask by its colours, as a viewer shows it (the order of the palette's entries
    says nothing: PIL's adaptive quantisation puts white first): of two colours the brighter
    is foreground (PASCAL VOC's dark red on black too); one colour is foreground unless black."""
    indices = np.asarray(img)
    colours = np.asarray(img.convert("RGB")).reshape(-1, 3)
    used, first = np.unique(indices.ravel(), return_index=True)
    brightness = colours[first].astype(int).max(axis=1)
    if len(used) > 2:
        raise ClccError(f"{path}: palette mask has {len(used)} colours; binary segmentation "
                        "needs 2 (a label map of several classes: prepare with --classes)")
    if len(used) == 1:
        return np.full(indices.shape, brightness[0] > 0)
    if brightness[0] == brightness[1]:
        raise ClccError(f"{path}: the two colours of this palette mask are equally bright; "
                        "cannot tell foreground from background")
    return indices == used[int(np.argmax(brightness))]


def read_mask(path: Path, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """A mask as a bool (H, W) array, from 0/1, 0/255, RGB, palette (by colour: the brighter of
    its two colours) or 16-bit files.

    A pixel is foreground when its brightest channel exceeds `MASK_THRESHOLD` on a 0-255 scale;
    masks whose maximum is 1 are read as 0/1 label maps. `expected_size` is the (width, height)
    of the image the mask belongs to.
    """
    path = Path(path)
    img = _open_mask(path, expected_size)
    if img.mode == "P":
        return _palette_mask(img, path)
    arr, top = _pixels(img, path)
    grey = arr.max(axis=-1)
    if top > 1 and 0 < grey.max() < 32:  # a label map (0/1), not a 0/255 picture
        values = np.unique(grey)
        if len(values) > 2:
            raise ClccError(
                f"{path}: mask values {values.astype(int).tolist()[:8]} look like a label map "
                "with more than two classes; binary segmentation needs 0/1 or 0/255"
            )
        return grey == values.max()
    scaled = grey * (255.0 / top)
    ambiguous = float(np.mean((scaled > 64) & (scaled < 191)))
    if ambiguous > MAX_AMBIGUOUS_FRACTION:
        raise ClccError(
            f"{path}: not a binary mask ({ambiguous:.0%} of pixels are mid-grey, between 64 "
            "and 191); expected 0/1, 0/255 or black/colour masks"
        )
    return scaled > MASK_THRESHOLD


def read_label_map(path: Path, classes: int, expected_size: tuple[int, int] | None = None
                   ) -> np.ndarray:
    """A label map as uint8 (H, W) of class values 0 … classes − 1, read by value: grey (8 or
    16 bit) or palette (by index, as nnU-Net and ITK-SNAP write them). A colour image or a value
    outside the declared classes is refused, naming the file."""
    path = Path(path)
    img = _open_mask(path, expected_size)
    if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
        raise ClccError(f"{path}: a label map must have one channel (grey or palette) holding "
                        f"the class values 0…{classes - 1}; this file is {img.mode}")
    values = np.asarray(img).astype(np.int64)
    outside = np.unique(values[(values < 0) | (values >= classes)])
    if outside.size:
        raise ClccError(f"{path}: label values {outside.tolist()[:8]} outside the declared "
                        f"classes 0…{classes - 1} (--classes)")
    return values.astype(np.uint8)
