"""One case → the arrays the cache stores: its slices at the training size, and for a volume
its label volume at its own resolution (what the field scores a volume against).

2-D images are one slice each. A volume is cut along its first axis (`clcc.data.volumes`) and
every slice resized to size×size as SSL4MIS and BCP resize them, whatever the aspect ratio: the
image bilinear, the label map with nearest neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from clcc.data.images import read_image, read_label_map, read_mask
from clcc.data.sources import Case
from clcc.data.volumes import (
    HDF5_SUFFIXES,
    check_same_grid,
    is_volume_file,
    read_volume,
    to_grey,
    to_label_map,
)
from clcc.errors import ClccError

LUMINANCE = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass
class Decoded:
    """A case ready for the cache."""

    images: np.ndarray  # (D, S, S, C) uint8
    masks: np.ndarray  # (D, S, S) uint8 label maps (zeros without a mask)
    native: np.ndarray | None  # (D, H, W) uint8 label volume of a labelled volume, else None
    spacing: tuple[float, float, float] | None  # of a volume, (D, H, W) order, mm


def read_case(case: Case, labels: dict[str, int] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Decode and check one 2-D case at its own size: uint8 RGB image and uint8 label map
    (zeros without a mask). Without `labels` (the data set's declared classes) the mask is
    binary, read as `read_mask` does; with them it is a label map read by value."""
    image = read_image(case.image)
    height, width = image.shape[:2]
    if case.mask is None:
        return image, np.zeros((height, width), np.uint8)
    if labels:
        return image, read_label_map(case.mask, len(labels), expected_size=(width, height))
    return image, read_mask(case.mask, expected_size=(width, height)).astype(np.uint8)


def _stack(parts: list[np.ndarray], case: Case, what: str) -> np.ndarray:
    if len({p.shape[1:] for p in parts}) > 1:
        raise ClccError(f"{case.image}: the slices of {case.name!r} differ in size ({what})")
    return np.concatenate(parts)


def read_volume_case(case: Case, labels: dict[str, int] | None = None
                     ) -> tuple[np.ndarray, np.ndarray | None, tuple | None]:
    """A volume case at its own size: uint8 grey (D, H, W), its label volume (or None) and
    its spacing. HDF5 files hold images and their labels side by side: SSL4MIS's in [0, 1]
    (kept as they are), UA-MT's LA volumes z-scored (clipped and scaled like NIfTI)."""
    if case.extra_channels:
        raise ClccError(f"{case.image}: {len(case.channel_files)} input channels; a 2-D "
                        "network takes one channel of a volume: prepare the set with --size 0 "
                        "and train a 3-D network (model.spatial_dims: 3)")
    files = case.slices or (case.image,)
    volumes = [read_volume(f, "image", case.slice_axis) for f in files]
    voxels = _stack([v.voxels for v in volumes], case, "images")
    normalised = case.image.name.lower().endswith(HDF5_SUFFIXES) and (
        0 <= float(voxels.min(initial=0)) and float(voxels.max(initial=0)) <= 1)
    grey = to_grey(voxels, case.image, normalised)
    if case.mask is None:
        return grey, None, volumes[0].spacing
    label_files = case.slices or (case.mask,)
    label_volumes = [read_volume(f, "label", case.slice_axis) for f in label_files]
    if not case.slices:
        check_same_grid(volumes[0], label_volumes[0], case.image, case.mask)
    truth = _stack([v.voxels for v in label_volumes], case, "labels")
    if truth.shape != grey.shape:
        raise ClccError(f"{case.mask}: label volume {truth.shape} but its image is {grey.shape}")
    return grey, to_label_map(truth, case.mask, len(labels) if labels else 2), volumes[0].spacing


def _resize(plane: np.ndarray, size: int, resample: int) -> np.ndarray:
    return np.asarray(Image.fromarray(plane).resize((size, size), resample), np.uint8)


def with_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """A uint8 (H, W, 3) RGB or (H, W, 1) grey image as a network of `channels` inputs takes
    it: itself, its luminance (H, W, 1) for a grey model, or grey repeated (H, W, 3) for an
    RGB one (as `read_image` turns a grey file into RGB)."""
    if image.shape[-1] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=-1)
    return np.round(image.astype(np.float32) @ LUMINANCE).astype(np.uint8)[..., None]


RESAMPLING = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST}
"""How an image is resized to the training size (`data.resample`)."""


def resize_image(image: np.ndarray, size: int, resample: str = "bilinear") -> np.ndarray:
    """(H, W, C) uint8 → (S, S, C), bilinear or nearest (PIL resizes one grey plane as mode
    L)."""
    if image.shape[-1] == 1:
        return _resize(image[..., 0], size, RESAMPLING[resample])[..., None]
    return _resize(image, size, RESAMPLING[resample])


def load_case(case: Case, size: int, labels: dict[str, int] | None = None,
              channels: int = 3, resample: str = "bilinear") -> Decoded:
    """A case decoded and resized to size×size (images as `resample` says, masks nearest);
    `channels` 1 reads a 2-D image as grey."""
    if is_volume_file(case.image):
        grey, native, spacing = read_volume_case(case, labels)
        planes, truths = [p[..., None] for p in grey], native
        if truths is None:
            truths = np.zeros_like(grey)
    else:
        image, truth = read_case(case, labels)
        planes, truths, native, spacing = [with_channels(image, channels)], truth[None], None, None
    images = np.stack([resize_image(p, size, resample) for p in planes])
    masks = np.stack([_resize(t, size, Image.NEAREST) for t in truths])
    return Decoded(images, masks, native, spacing)
