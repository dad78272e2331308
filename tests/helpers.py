"""Small image files written by tests (no real data in the repository), and a process that
holds a run's lock."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
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


HOLD = """import sys, time
from pathlib import Path
from clcc.files import exclusive
with exclusive(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


@contextlib.contextmanager
def locked_elsewhere(run: Path) -> Iterator[subprocess.Popen]:
    """Another process holding `run`'s lock for the block; killed (-9) at its end."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


AFFINE = np.array([[-1.5, 0, 0, 90], [0, 1.25, 0, -60], [0, 0, 6.0, 12], [0, 0, 0, 1]])
"""A volume's voxel-to-world matrix with unequal spacing (1.5, 1.25, 6 mm) and a flip."""


def volume_labels(shape_xyz=(24, 20, 4), seed: int = 0) -> np.ndarray:
    """(X, Y, Z) uint8 label volume of two classes: blocks aligned to even voxels (so a 2×
    down- and up-sampling with nearest neighbour gives them back exactly)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape_xyz, np.uint8)
    x, y = 2 * int(rng.integers(1, 3)), 2 * int(rng.integers(1, 3))
    labels[x : x + 8, y : y + 6, :] = 1
    labels[x + 2 : x + 6, y + 2 : y + 4, 1:] = 2
    return labels


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))


def write_volume_case(image: Path, label: Path | None, seed: int = 0) -> np.ndarray:
    """A NIfTI image whose intensity follows its labels (plus noise), and its label volume;
    returns the labels (X, Y, Z)."""
    labels = volume_labels(seed=seed)
    noise = np.random.default_rng(seed).normal(0, 5, labels.shape)
    write_nifti(image, (100 + 300 * labels.astype(np.float32) + noise).astype(np.float32))
    if label is not None:
        write_nifti(label, labels)
    return labels


def write_nnunet(root: Path, cases: int = 6, ending: str = ".nii.gz", **extra) -> None:
    """A raw nnU-Net data set of `cases` small volumes with classes a (1) and b (2), one image
    file per channel of `channel_names` (the second and later darker where the first is
    brighter, on another scale)."""
    import json

    spec = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1, "b": 2},
            "numTraining": cases, "file_ending": ending, **extra}
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(spec))
    for i in range(cases):
        labels = write_volume_case(root / "imagesTr" / f"case{i:02d}_0000{ending}",
                                   root / "labelsTr" / f"case{i:02d}{ending}", seed=i)
        for c in range(1, len(spec["channel_names"])):
            write_nifti(root / "imagesTr" / f"case{i:02d}_{c:04d}{ending}",
                        (2000.0 * c - 40 * labels).astype(np.float32))


def write_ssl4mis_acdc(root: Path) -> dict[str, np.ndarray]:
    """SSL4MIS's ACDC layout in miniature: 4 training patients as slice files (listed in the
    order 003, 001, 004, 002), one validation and one test patient as volumes of 4 slices of
    24×24; returns the label volume (D, H, W) of each validation/test volume."""
    import h5py

    data = root / "data"
    data.mkdir(parents=True)
    volumes: dict[str, np.ndarray] = {}
    slices = []
    for k, number in enumerate((3, 1, 4, 2)):
        for frame in (1, 2):
            name = f"patient{number:03d}_frame{frame:02d}"
            labels = np.moveaxis(volume_labels((24, 24, 4), seed=k + frame), 2, 0)
            for s in range(len(labels)):
                with h5py.File(data / f"{name}_slice_{s}.h5", "w") as f:
                    f["image"] = (labels[s] / 3).astype(np.float32)
                    f["label"] = labels[s]
                slices.append(f"{name}_slice_{s}")
    lists = {"val": [], "test": []}
    for split, number in (("val", 5), ("test", 6)):
        for frame in (1, 2):
            name = f"patient{number:03d}_frame{frame:02d}"
            labels = np.moveaxis(volume_labels((24, 24, 4), seed=number + frame), 2, 0)
            with h5py.File(data / f"{name}.h5", "w") as f:
                f["image"] = (labels / 3).astype(np.float32)
                f["label"] = labels
            volumes[name] = labels
            lists[split].append(name)
    (root / "train_slices.list").write_text("".join(f"{s}\n" for s in slices))
    for split, names in lists.items():
        (root / f"{split}.list").write_text("".join(f"{n}\n" for n in names))
    return volumes
