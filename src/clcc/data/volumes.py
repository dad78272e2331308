"""Reading and writing volumes: NIfTI (nibabel) and SSL4MIS's HDF5 files.

A volume is a `Volume`: the voxels as (D, H, W) — slices first, the order the network sees
them — with the voxel spacing in that order (millimetres, None when the file has none).
NIfTI stores (X, Y, Z): the slices are taken along its third axis, so (D, H, W) = (Z, X, Y),
and `volume_bytes` turns a prediction back into the input's own layout, affine and
header, so ITK-SNAP or 3D Slicer shows it on the image.

Intensities become 8-bit grey per volume (the 2-D cache stores uint8): SSL4MIS's files are
already min-max normalised to [0, 1]; others are clipped to their 0.5th–99.5th percentiles
(outliers of MRI and CT would squeeze the rest into a few grey values), then min-max scaled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clcc.errors import ClccError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
HDF5_SUFFIXES = (".h5",)
CLIP_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class Volume:
    voxels: np.ndarray  # (D, H, W)
    spacing: tuple[float, float, float] | None  # (D, H, W) order, mm
    affine: np.ndarray | None = None  # NIfTI's voxel-to-world matrix (4, 4)


def is_nifti(path: Path) -> bool:
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def is_volume_file(path: Path) -> bool:
    name = Path(path).name.lower()
    return name.endswith(NIFTI_SUFFIXES + HDF5_SUFFIXES)


def volume_stem(path: Path) -> str:
    """The file name without .nii.gz / .nii / .h5."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES + HDF5_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def _nifti(path: Path):
    import nibabel as nib

    try:
        img = nib.load(str(path))
        shape, itemsize = img.shape, img.get_data_dtype().itemsize
    except Exception as err:  # nibabel raises many types for a bad file
        raise ClccError(f"{path}: cannot read NIfTI ({err})") from err
    check_volume_memory(path, shape, itemsize)
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as err:  # noqa: BLE001 - as above
        raise ClccError(f"{path}: cannot read NIfTI ({err})") from err
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise ClccError(f"{path}: a volume of shape {data.shape}; clcc reads 3-D volumes (one "
                        "channel per file, as nnU-Net stores them)")
    return img, data


def read_volume(path: Path, key: str = "image", slice_axis: int = 0) -> Volume:
    """A NIfTI file, or dataset `key` ("image" or "label") of an HDF5 file (SSL4MIS's, UA-MT's;
    2-D slice files read as one slice) with its `slice_axis` moved first: (D, H, W)."""
    path = Path(path)
    if path.name.lower().endswith(HDF5_SUFFIXES):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                data = np.asarray(f[key][()])
        except (OSError, KeyError) as err:
            raise ClccError(f"{path}: cannot read dataset {key!r} of this HDF5 file ({err})"
                            ) from err
        if data.ndim == 2:
            data = data[None]
        if data.ndim != 3:
            raise ClccError(f"{path}: {key} has shape {data.shape}; expected (H, W) or (D, H, W)")
        return Volume(np.moveaxis(data, slice_axis, 0), None)
    img, data = _nifti(path)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    spacing = (zooms[2], zooms[0], zooms[1]) if len(zooms) == 3 else None
    return Volume(np.moveaxis(data, 2, 0), spacing, np.asarray(img.affine, float))


def check_same_grid(image: Volume, label: Volume, image_path: Path, label_path: Path) -> None:
    """Refuse a label volume whose voxel-to-world matrix is not its image's (as nnU-Net's
    integrity check does, to 1e-3): on the same voxel grid, an x-flipped affine is a mirrored
    label, which would train voxel for voxel as if it were right."""
    if image.affine is None or label.affine is None:
        return
    if not np.allclose(image.affine, label.affine, atol=1e-3):
        raise ClccError(f"{label_path}: its affine (orientation, origin or spacing) differs from "
                        f"{Path(image_path).name}'s; resample the label onto the image's grid")


PERCENTILE_SAMPLE = 2**24
"""Voxels the clipping percentiles are computed from: every voxel of a volume up to this size
(16.8 M, e.g. 512×512×64), an even stride through a larger one."""
CHUNK_SLICES = 16


def available_memory() -> int | None:
    """Bytes the kernel says a new allocation can have (MemAvailable), where it says."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_volume_memory(path: Path, shape: tuple[int, ...], itemsize: int,
                        available: int | None = None) -> None:
    """Refuse, before reading, a volume whose voxels (as stored) and grey copy cannot be held
    in memory, naming its size and what it needs."""
    need = int(np.prod(shape)) * (itemsize + 1)
    available = available_memory() if available is None else available
    if available is not None and need > available:
        raise ClccError(f"{path}: a volume of {'×'.join(map(str, shape))} voxels needs "
                        f"{need / 2**30:.1f} GiB to read, {available / 2**30:.1f} GiB is "
                        "available")


def to_grey(voxels: np.ndarray, path: Path, normalised: bool = False) -> np.ndarray:
    """uint8 (D, H, W) grey values of a volume's intensities; `normalised`: already in [0, 1].
    Converted `CHUNK_SLICES` slices at a time, so no float copy of a whole large volume is
    made; unless normalised, clipped at the 0.5 and 99.5 percentiles (of `PERCENTILE_SAMPLE`
    voxels at most)."""
    data = np.asarray(voxels)
    low, high = 0.0, 1.0
    if not normalised:
        flat = data.ravel(order="K")  # a view where the layout allows
        sample = np.asarray(flat[:: max(1, flat.size // PERCENTILE_SAMPLE)], np.float32)
        if not np.isfinite(sample).all():
            raise ClccError(f"{path}: the volume holds NaN or infinite values")
        low, high = (float(v) for v in np.percentile(sample, CLIP_PERCENTILES))
    grey = np.empty(data.shape, np.uint8)
    for start in range(0, len(data), CHUNK_SLICES):
        chunk = np.asarray(data[start:start + CHUNK_SLICES], np.float32)
        if not np.isfinite(chunk).all():
            raise ClccError(f"{path}: the volume holds NaN or infinite values")
        if not normalised:
            chunk = (np.clip(chunk, low, high) - low) / (high - low) if high > low else chunk * 0
        grey[start:start + CHUNK_SLICES] = np.round(np.clip(chunk, 0, 1) * 255)
    return grey


def to_label_map(voxels: np.ndarray, path: Path, classes: int) -> np.ndarray:
    """uint8 (D, H, W) class values of a label volume, refusing values that are not whole
    numbers in 0 … classes − 1 (a binary set: 0/1, or 0/255 as some tools write masks)."""
    data = np.asarray(voxels)
    if data.dtype.kind == "f":
        if not np.isfinite(data).all() or not np.array_equal(data, np.round(data)):
            raise ClccError(f"{path}: a label volume must hold whole class values")
    values = np.unique(data).astype(np.int64)
    if classes == 2 and set(values.tolist()) <= {0, 255}:
        return (data > 0).astype(np.uint8)
    outside = values[(values < 0) | (values >= classes)]
    if outside.size:
        hint = " (several classes: prepare with --classes)" if classes == 2 else ""
        raise ClccError(f"{path}: label values {outside.tolist()[:8]} outside the declared "
                        f"classes 0…{classes - 1}{hint}")
    return data.astype(np.uint8)


def volume_bytes(values: np.ndarray, reference: Path, compressed: bool = True) -> bytes:
    """(D, H, W) `values` (uint8 labels, float32 probabilities) as the bytes of a NIfTI file
    with the affine and header of the NIfTI image `reference` (its data type that of
    `values`, no intensity scaling); gzip-compressed for `.nii.gz`. Bytes, so the caller
    writes them atomically under any temporary name."""
    import gzip

    img, data = _nifti(Path(reference))
    expected = (data.shape[2], data.shape[0], data.shape[1])
    if values.shape != expected:
        raise ValueError(f"volume {values.shape} does not fit {reference} {expected}")
    header = img.header.copy()
    header.set_data_dtype(values.dtype)
    header.set_slope_inter(1, 0)
    out = np.moveaxis(values, 0, 2).reshape(img.shape)
    raw = type(img)(out, img.affine, header).to_bytes()
    return gzip.compress(raw, compresslevel=6) if compressed else raw
