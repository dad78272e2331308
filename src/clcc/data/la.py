"""The left-atrium set (LA, 2018 Atrial Segmentation Challenge) as UA-MT ships it and every
LA paper trains on it (yulequan/UA-MT, `data/`): `2018LA_Seg_Training Set/<id>/mri_norm2.h5`
(`image` float32, already normalised and cropped around the atrium by UA-MT's
`la_heart_processing.py`; `label` uint8 0/1) and the lists `train.list` (80) and `test.list`
(20). The labelled volumes of selection 0 are the first N of `train.list`, as in every LA paper.

UA-MT and its successors have no validation set (MC-Net+, BCP and AD-MT pick their checkpoint
on `test.list` itself). clcc holds out the last `VALIDATION` volumes of `train.list` for the
checkpoint choice, so training and unlabelled volumes are the first 70: a stated difference.
Arrays are stored (x, y, z), z the slice axis; clcc's volumes are (D, H, W) = (z, x, y)
(`Case.slice_axis` 2).
"""

from __future__ import annotations

from pathlib import Path

from clcc.data.sources import Case, Layout
from clcc.errors import ClccError

VALIDATION = 10
FOLDER = "2018LA_Seg_Training Set"
FILE = "mri_norm2.h5"


def _ids(path: Path) -> list[str]:
    if not path.is_file():
        raise ClccError(f"{path}: list not found (UA-MT's data/ has train.list and test.list "
                        f"beside {FOLDER}/)")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def la(root: Path) -> Layout:
    """`root`: UA-MT's `data/` folder (or its repository root)."""
    root = Path(root)
    if not (root / FOLDER).is_dir() and (root / "data" / FOLDER).is_dir():
        root = root / "data"
    train, test = _ids(root / "train.list"), _ids(root / "test.list")
    cases = []
    for name in train + test:
        path = root / FOLDER / name / FILE
        if not path.is_file():
            raise ClccError(f"{path}: listed volume not found")
        cases.append(Case(name, path, path, slice_axis=2))
    if len(train) <= VALIDATION:
        raise ClccError(f"{root / 'train.list'}: {len(train)} volumes; the last {VALIDATION} "
                        "are held out for validation, so more are needed")
    splits = {"train": train[:-VALIDATION], "val": train[-VALIDATION:], "test": test}
    return Layout(cases, splits, order=train[:-VALIDATION], classes=("left atrium",))
