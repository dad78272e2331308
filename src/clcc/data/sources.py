"""Readers of raw data set layouts. Each turns a folder into a sorted list of `Case`s.

- `kvasir-seg`: `images/*.jpg` and `masks/*.jpg` with the same names (as distributed).
- `isic2018`: `ISIC2018_Task1-2_Training_Input/ISIC_*.jpg` and
  `ISIC2018_Task1_Training_GroundTruth/ISIC_*_segmentation.png` (ISIC 2018 Task 1).
- `folder`: users' own data: `images/` and `masks/` matched by file stem (an image without a
  mask is unlabelled), and optionally `unlabelled/`; 2-D images, or NIfTI volumes.

The volume layouts (ACDC, nnU-Net) live in their own modules; `clcc.data.layouts` names them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from clcc.data.images import IMAGE_SUFFIXES
from clcc.data.volumes import NIFTI_SUFFIXES, is_volume_file, volume_stem
from clcc.errors import ClccError


@dataclass(frozen=True)
class Case:
    """One image or volume, and its mask when labelled. `name` is unique within a data set.

    `group`: cases of one group (the frames of one patient) always share a split; None, the
    case is its own group. `slices`: a volume stored one file per slice (SSL4MIS's training
    slices, image and label in each file), in slice order; `image` is then the first.
    `slice_axis`: the axis of an HDF5 array that runs across slices (0 in SSL4MIS's files, 2
    in UA-MT's (x, y, z) LA volumes); NIfTI volumes are sliced along their third axis.
    `extra_channels`: the files of a volume's second, third, … input channel (same grid)."""

    name: str
    image: Path
    mask: Path | None
    group: str | None = None
    slices: tuple[Path, ...] = ()
    slice_axis: int = 0
    extra_channels: tuple[Path, ...] = ()  # a volume's further inputs (nnU-Net's `_0001`, …)

    @property
    def channel_files(self) -> tuple[Path, ...]:
        """The image file of each input channel, in channel order."""
        return (self.image, *self.extra_channels)

    @property
    def unit(self) -> str:
        """What splits and labelled selections are drawn over."""
        return self.group or self.name


@dataclass(frozen=True)
class Layout:
    """What a source reader finds: the cases, and a split and labelled order when the data
    set publishes them (ACDC's SSL4MIS lists): `splits` maps train/val/test to case names,
    `order` lists the training groups in the order selection 0 takes its labelled ones.
    Volumes are always grey."""

    cases: list[Case]
    splits: dict[str, list[str]] | None = None
    order: list[str] | None = None
    classes: tuple[str, ...] | None = None  # the foreground classes the data set declares
    grey: bool = False  # one input channel (2-D images are read as RGB unless grey)
    modality: str | None = None  # dataset.json's channel name ("CT" normalises as nnU-Net)

    @property
    def volumetric(self) -> bool:
        return any(is_volume_file(c.image) for c in self.cases)

    @property
    def channels(self) -> int:
        """Input channels: a volume's files per case, a 2-D image's grey or RGB."""
        if self.volumetric:
            return len(self.cases[0].channel_files)
        return 1 if self.grey else 3


def _images_in(folder: Path) -> list[Path]:
    """2-D images and NIfTI volumes of a folder, sorted."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES
                            or p.name.lower().endswith(NIFTI_SUFFIXES))
    )


def by_stem(files: Iterable[Path], strip: str = "") -> dict[str, Path]:
    """Map stem → file, refusing two files with one stem (a.jpg and a.png)."""
    found: dict[str, Path] = {}
    for path in files:
        stem = volume_stem(path).removesuffix(strip) if strip else volume_stem(path)
        if stem != stem.strip():
            raise ClccError(f"{path}: a case name may not begin or end with white space (split "
                            "lists are read line by line, stripped); rename the file")
        if stem in found:
            raise ClccError(
                f"duplicate case name {stem!r}: {found[stem]} and {path}; rename one of them"
            )
        found[stem] = path
    return found


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise ClccError(f"{path}: {what} folder not found")
    return path


def _pair(
    images: dict[str, Path], masks: dict[str, Path], mask_dir: Path, allow_unlabelled: bool
) -> list[Case]:
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise ClccError(f"{masks[orphans[0]]}: mask without an image ({len(orphans)} such)")
    missing = sorted(set(images) - set(masks))
    if missing and not allow_unlabelled:
        raise ClccError(f"{images[missing[0]]}: no mask in {mask_dir} ({len(missing)} such)")
    return [Case(stem, images[stem], masks.get(stem)) for stem in sorted(images)]


def _nonempty(cases: list[Case], root: Path) -> list[Case]:
    if not cases:
        raise ClccError(f"{root}: no images found (looked for "
                        f"{', '.join(IMAGE_SUFFIXES + NIFTI_SUFFIXES)})")
    return cases


def kvasir_seg(root: Path) -> list[Case]:
    root = Path(root)
    if not (root / "images").is_dir() and (root / "Kvasir-SEG" / "images").is_dir():
        root = root / "Kvasir-SEG"  # the archive's top folder
    image_dir = require_dir(root / "images", "Kvasir-SEG images")
    mask_dir = require_dir(root / "masks", "Kvasir-SEG masks")
    images = by_stem(_images_in(image_dir))
    masks = by_stem(_images_in(mask_dir))
    return _nonempty(_pair(images, masks, mask_dir, allow_unlabelled=False), root)


def isic2018(root: Path) -> list[Case]:
    root = Path(root)
    image_dir = require_dir(root / "ISIC2018_Task1-2_Training_Input", "ISIC 2018 input")
    mask_dir = require_dir(root / "ISIC2018_Task1_Training_GroundTruth", "ISIC 2018 truth")
    images = by_stem(p for p in _images_in(image_dir) if p.name.startswith("ISIC_"))
    masks = by_stem(
        (p for p in _images_in(mask_dir) if p.stem.endswith("_segmentation")),
        strip="_segmentation",
    )
    return _nonempty(_pair(images, masks, mask_dir, allow_unlabelled=False), root)


def folder(root: Path) -> list[Case]:
    root = Path(root)
    image_dir = require_dir(root / "images", "images")
    images = by_stem(_images_in(image_dir))
    mask_dir = root / "masks"
    masks = by_stem(_images_in(mask_dir)) if mask_dir.is_dir() else {}
    cases = _pair(images, masks, mask_dir, allow_unlabelled=True)
    extra_dir = root / "unlabelled"
    if extra_dir.is_dir():
        extra = by_stem(_images_in(extra_dir))
        clash = sorted(set(extra) & set(images))
        if clash:
            raise ClccError(
                f"duplicate case name {clash[0]!r}: {images[clash[0]]} and {extra[clash[0]]}"
            )
        cases += [Case(stem, extra[stem], None) for stem in sorted(extra)]
    _nonempty(cases, root)
    if not any(c.mask for c in cases):
        raise ClccError(f"{root}: no image has a mask in {mask_dir}; nothing to train on")
    kinds = {is_volume_file(c.image) for c in cases}
    if len(kinds) > 1:
        first = next(c.image for c in cases if is_volume_file(c.image))
        raise ClccError(f"{first}: NIfTI volumes and 2-D images in one data set; prepare them "
                        "apart")
    return sorted(cases, key=lambda c: c.name)


def labelled_pairs(image_dir: Path, mask_dir: Path) -> list[Case]:
    """Images and their masks from two folders, matched by file stem (for evaluation on a
    labelled folder: every image must have its mask)."""
    image_dir = require_dir(Path(image_dir), "images")
    mask_dir = require_dir(Path(mask_dir), "masks")
    images = by_stem(_images_in(image_dir))
    masks = by_stem(_images_in(mask_dir))
    volume = next((p for p in images.values() if is_volume_file(p)), None)
    if volume is not None:
        raise ClccError(f"{volume}: a volume; score volumes as the field does by preparing "
                        "them (`clcc data prepare folder`) and `clcc evaluate --data`")
    return _nonempty(_pair(images, masks, mask_dir, allow_unlabelled=False), image_dir)
