"""ACDC (cardiac cine-MRI, Bernard et al. 2018) in the two forms users have it.

- SSL4MIS's pre-processed HDF5 (what SSL4MIS, UniMatch and BCP train on): `data/` holds the
  training slices `patientNNN_frameFF_slice_K.h5` of 70 patients and the validation and test
  volumes `patientNNN_frameFF.h5`; `train_slices.list`, `val.list`, `test.list` give the split.
- the official NIfTI release: `patientNNN/patientNNN_frameFF.nii.gz` with `_gt.nii.gz` (the
  two labelled frames, end-diastole and end-systole, named in `Info.cfg`), under the root or
  its `training/` or `database/training/` folder.

Both are read with SSL4MIS's split (by patient: 70 / 10 / 20) and its labelled order, so
selection 0 of `--labelled 3` is SSL4MIS's "3 labelled cases" (patients 099, 038, 050: the
first 68 slices of `train_slices.list`) and of `--labelled 7` its "7 cases" (136 slices).
A case is one frame's volume; its group is the patient, so both frames share a split.
"""

from __future__ import annotations

import re
from pathlib import Path

from clcc.data.sources import Case, Layout
from clcc.errors import ClccError

CLASSES = ("rv", "myo", "lv")
"""Label values 1, 2, 3: right ventricle, myocardium, left ventricle."""

SSL4MIS_VAL = (28, 85, 82, 87, 19, 30, 78, 45, 2, 39)
SSL4MIS_TEST = (11, 13, 84, 33, 93, 22, 68, 24, 83, 81, 80, 1, 7, 66, 8, 65, 75, 64, 59, 52)
SSL4MIS_TRAIN_ORDER = (
    99, 38, 50, 100, 58, 21, 49, 20, 72, 40, 60, 89, 4, 56, 98, 96, 31, 18, 94, 47, 48, 55, 97,
    74, 43, 41, 63, 37, 95, 54, 26, 88, 32, 69, 6, 71, 12, 73, 61, 17, 25, 10, 57, 29, 51, 5, 36,
    46, 62, 34, 76, 92, 70, 77, 67, 3, 91, 16, 14, 44, 42, 90, 53, 27, 35, 86, 23, 9, 79, 15,
)
"""Patients in the order of SSL4MIS's `train_slices.list` (its labelled cases are the first)."""

SLICE = re.compile(r"^(patient\d{3}_frame\d{2})_slice_(\d+)$")


def patient(name: str) -> str:
    return name.split("_", 1)[0]


def _patient_name(number: int) -> str:
    return f"patient{number:03d}"


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise ClccError(f"{path}: list not found (an SSL4MIS ACDC folder has train_slices.list, "
                        "val.list and test.list beside data/)")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _file(path: Path) -> Path:
    if not path.is_file():
        raise ClccError(f"{path}: listed file not found")
    return path


def ssl4mis(root: Path) -> Layout:
    """SSL4MIS's HDF5 layout, split as its lists say."""
    data = root / "data"
    slices: dict[str, list[tuple[int, Path]]] = {}
    for line in _lines(root / "train_slices.list"):
        match = SLICE.match(line)
        if not match:
            raise ClccError(f"{root / 'train_slices.list'}: {line!r} is not a slice name "
                            "patientNNN_frameFF_slice_K")
        slices.setdefault(match[1], []).append((int(match[2]), _file(data / f"{line}.h5")))
    cases = [Case(name, files[0], files[0], patient(name), tuple(files))
             for name, parts in slices.items()
             for files in [[f for _, f in sorted(parts)]]]
    splits = {"train": sorted(slices)}
    for split in ("val", "test"):
        names = _lines(root / f"{split}.list")
        cases += [Case(n, _file(data / f"{n}.h5"), data / f"{n}.h5", patient(n)) for n in names]
        splits[split] = sorted(names)
    order = list(dict.fromkeys(patient(n) for n in slices))  # first appearance in the list
    return Layout(sorted(cases, key=lambda c: c.name), splits, order, CLASSES)


def _training_folder(root: Path) -> Path:
    for folder in (root, root / "training", root / "database" / "training"):
        if any(folder.glob("patient[0-9][0-9][0-9]")):
            return folder
    raise ClccError(f"{root}: neither an SSL4MIS ACDC folder (train_slices.list, data/) nor the "
                    "official release (patientNNN/ folders, here or in training/)")


def _named_frames(directory: Path) -> list[str]:
    """The frames `Info.cfg` names (ED, ES) as case names, or none without an Info.cfg."""
    info = directory / "Info.cfg"
    if not info.is_file():
        return []
    frames = []
    for line in info.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("ED", "ES") and value.strip().isdigit():
            frames.append(f"{directory.name}_frame{int(value):02d}")
    return frames


def official(root: Path) -> Layout:
    """The NIfTI release: the labelled frames of each patient, split as SSL4MIS splits them.
    A frame that `Info.cfg` names must have its `_gt` label volume (a missing one would make
    SSL4MIS's "3 cases" silently fewer volumes)."""
    folder = _training_folder(root)
    cases = []
    for directory in sorted(folder.glob("patient[0-9][0-9][0-9]")):
        for frame in _named_frames(directory):
            if not list(directory.glob(f"{frame}_gt.nii*")):
                raise ClccError(f"{directory / 'Info.cfg'}: names {frame}, but "
                                f"{frame}_gt.nii.gz is missing")
        for label in sorted(directory.glob(f"{directory.name}_frame[0-9][0-9]_gt.nii*")):
            name = label.name.split("_gt.nii")[0]
            image = directory / label.name.replace("_gt.nii", ".nii")
            if not image.is_file():
                raise ClccError(f"{label}: label volume without its image {image.name}")
            cases.append(Case(name, image, label, directory.name))
    if not cases:
        raise ClccError(f"{folder}: no patientNNN_frameFF_gt.nii.gz label volumes found")
    groups = {c.group for c in cases}
    split_of = {_patient_name(n): s for s, numbers in (("val", SSL4MIS_VAL),
                                                        ("test", SSL4MIS_TEST)) for n in numbers}
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for case in cases:
        splits[split_of.get(case.unit, "train")].append(case.name)
    order = [p for p in map(_patient_name, SSL4MIS_TRAIN_ORDER) if p in groups]
    order += sorted(groups - set(order) - set(split_of))  # patients SSL4MIS did not use
    return Layout(cases, splits, order, CLASSES)


def acdc(root: Path) -> Layout:
    root = Path(root)
    return ssl4mis(root) if (root / "train_slices.list").is_file() else official(root)
