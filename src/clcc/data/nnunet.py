"""nnU-Net's raw data set layout (nnU-Net v2 `dataset.json`), the form most medical users have.

    dataset.json        {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "lv": 1},
                         "file_ending": ".nii.gz", "numTraining": N}
    imagesTr/CASE_0000.nii.gz
    labelsTr/CASE.nii.gz

`.png` data sets (nnU-Net's 2-D form) read the same way. clcc trains on one input channel:
a data set of several (`_0000`, `_0001`, …) is refused rather than silently cut to one.
Region-based labels (a list of values per name) are refused too: clcc's classes are exclusive;
so is nnU-Net v2's `ignore` label (pixels excluded from loss and metrics), rather than trained as
a class.
`imagesTs/` is left alone: test images without labels are not training data.
"""

from __future__ import annotations

import json
from pathlib import Path

from clcc.data.sources import Case, Layout, by_stem, require_dir
from clcc.errors import ClccError

CHANNEL = "_0000"


def read_dataset_json(root: Path) -> dict:
    path = Path(root) / "dataset.json"
    if not path.is_file():
        raise ClccError(f"{path}: not found; an nnU-Net raw data set has dataset.json beside "
                        "imagesTr/ and labelsTr/")
    try:
        spec = json.loads(path.read_text())
        channels, labels = spec["channel_names"], spec["labels"]
        ending = spec["file_ending"]
    except (ValueError, KeyError, TypeError) as err:
        raise ClccError(f"{path}: needs channel_names, labels and file_ending ({err})") from err
    if not isinstance(channels, dict) or len(channels) != 1:
        raise ClccError(f"{path}: {len(channels)} input channels; clcc trains on one")
    if not isinstance(labels, dict) or not all(isinstance(v, int) for v in labels.values()):
        raise ClccError(f"{path}: labels must map each name to one class value (region-based "
                        "labels, lists of values, are not supported)")
    if "ignore" in labels:
        raise ClccError(f"{path}: label 'ignore' (value {labels['ignore']}) is nnU-Net's ignore "
                        "label, which clcc does not support; it would be trained as a class. "
                        "Remove it (and its pixels) or map them to background")
    if not isinstance(ending, str) or not ending.startswith("."):
        raise ClccError(f"{path}: file_ending {ending!r} should look like .nii.gz or .png")
    return spec


def classes(root: Path) -> tuple[str, ...]:
    """The foreground class names of dataset.json, in value order."""
    labels = read_dataset_json(root)["labels"]
    return tuple(n for n, _ in sorted(labels.items(), key=lambda item: item[1]) if _ != 0)


def nnunet(root: Path) -> Layout:
    root = Path(root)
    ending = read_dataset_json(root)["file_ending"]
    image_dir = require_dir(root / "imagesTr", "nnU-Net imagesTr")
    label_dir = require_dir(root / "labelsTr", "nnU-Net labelsTr")
    images = by_stem(p for p in sorted(image_dir.iterdir()) if p.name.endswith(ending))
    other = sorted(s for s in images if not s.endswith(CHANNEL))
    if other:
        raise ClccError(f"{images[other[0]]}: not CASE{CHANNEL}{ending}; clcc reads one input "
                        "channel per case")
    labels = by_stem(p for p in sorted(label_dir.iterdir()) if p.name.endswith(ending))
    cases = [Case(stem[: -len(CHANNEL)], path, labels.get(stem[: -len(CHANNEL)]))
             for stem, path in sorted(images.items())]
    orphans = sorted(set(labels) - {c.name for c in cases})
    if orphans:
        raise ClccError(f"{labels[orphans[0]]}: label without an image in {image_dir}")
    if not cases:
        raise ClccError(f"{image_dir}: no *{CHANNEL}{ending} images")
    if not any(c.mask for c in cases):
        raise ClccError(f"{label_dir}: no labels; nothing to train on")
    modality = str(next(iter(read_dataset_json(root)["channel_names"].values())))
    return Layout(cases, classes=classes(root), grey=True, modality=modality)
