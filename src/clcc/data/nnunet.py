"""nnU-Net's raw data set layout (nnU-Net v2 `dataset.json`), the form most medical users have.

    dataset.json        {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "lv": 1},
                         "file_ending": ".nii.gz", "numTraining": N}
    imagesTr/CASE_0000.nii.gz
    labelsTr/CASE.nii.gz

`.png` data sets (nnU-Net's 2-D form) read the same way. A volume set may have several input
channels (`CASE_0000`, `CASE_0001`, … as `channel_names` lists them, on one grid): a 3-D
network takes them as its input channels, each normalised on its own as nnU-Net's
ZScoreNormalization does; a 2-D network, or a set with a CT channel among several (nnU-Net's
CT statistics are per channel; clcc keeps one set), refuses them rather than cut them to one.
Region-based labels (a list of values per name) are refused too: clcc's classes are exclusive;
so is nnU-Net v2's `ignore` label (pixels excluded from loss and metrics), rather than trained as
a class.
`imagesTs/` is left alone: test images without labels are not training data.
"""

from __future__ import annotations

import json
from pathlib import Path

from clcc.data.sources import Case, Layout, by_stem, require_dir
from clcc.data.volumes import NIFTI_SUFFIXES
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
    if not isinstance(channels, dict) or sorted(channels) != [str(i) for i in
                                                              range(len(channels))]:
        raise ClccError(f"{path}: channel_names {channels!r} should map \"0\", \"1\", … to "
                        "the name of each input channel")
    if len(channels) > 1 and "CT" in channels.values():
        raise ClccError(f"{path}: a CT channel among {len(channels)} input channels; clcc "
                        "normalises CT only in single-channel sets")
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


def split_channel(stem: str) -> tuple[str, int] | None:
    """`CASE_0001` → ("CASE", 1); None for a stem without nnU-Net's channel suffix."""
    case, underscore, digits = stem.rpartition("_")
    if underscore and case and len(digits) == 4 and digits.isdigit():
        return case, int(digits)
    return None


def channel_groups(files: dict[str, Path], channels: int, folder: Path, ending: str
                   ) -> dict[str, tuple[Path, ...]]:
    """case → its `channels` files in channel order, from stem → file (`CASE_0000` …); a file
    without a channel suffix, one beyond the channels, or a case missing one is refused."""
    parts: dict[str, dict[int, Path]] = {}
    for stem, path in sorted(files.items()):
        found = split_channel(stem)
        if found is None or found[1] >= channels:
            last = f"_{channels - 1:04d}" if channels > 1 else ""
            raise ClccError(f"{path}: not CASE{CHANNEL}{ending}"
                            + (f" … CASE{last}{ending}" if last else "")
                            + f" ({channels} input channel{'s' if channels > 1 else ''})")
        parts.setdefault(found[0], {})[found[1]] = path
    groups = {}
    for case, found in parts.items():
        missing = [i for i in range(channels) if i not in found]
        if missing:
            raise ClccError(f"{folder / f'{case}_{missing[0]:04d}{ending}'}: not found; every "
                            f"case needs its {channels} input channels")
        groups[case] = tuple(found[i] for i in range(channels))
    return groups


def classes(root: Path) -> tuple[str, ...]:
    """The foreground class names of dataset.json, in value order."""
    labels = read_dataset_json(root)["labels"]
    return tuple(n for n, _ in sorted(labels.items(), key=lambda item: item[1]) if _ != 0)


def nnunet(root: Path) -> Layout:
    root = Path(root)
    spec = read_dataset_json(root)
    ending, names = spec["file_ending"], list(spec["channel_names"].values())
    if len(names) > 1 and not ending.lower().endswith(NIFTI_SUFFIXES):
        raise ClccError(f"{root / 'dataset.json'}: {len(names)} input channels of {ending} "
                        "images; clcc takes several channels of volumes only")
    image_dir = require_dir(root / "imagesTr", "nnU-Net imagesTr")
    label_dir = require_dir(root / "labelsTr", "nnU-Net labelsTr")
    images = by_stem(p for p in sorted(image_dir.iterdir()) if p.name.endswith(ending))
    groups = channel_groups(images, len(names), image_dir, ending)
    labels = by_stem(p for p in sorted(label_dir.iterdir()) if p.name.endswith(ending))
    cases = [Case(name, files[0], labels.get(name), extra_channels=files[1:])
             for name, files in sorted(groups.items())]
    orphans = sorted(set(labels) - {c.name for c in cases})
    if orphans:
        raise ClccError(f"{labels[orphans[0]]}: label without an image in {image_dir}")
    if not cases:
        raise ClccError(f"{image_dir}: no *{CHANNEL}{ending} images")
    if not any(c.mask for c in cases):
        raise ClccError(f"{label_dir}: no labels; nothing to train on")
    modality = str(names[0]) if len(names) == 1 else None  # only a single-channel set is CT
    return Layout(cases, classes=classes(root), grey=True, modality=modality)
