"""Whole volumes for 3-D networks, and the random patches they train on.

The same prepared set (manifest, splits, labelled selections) that gives a 2-D network its
slices gives a 3-D one its volumes: `VolumeData.open` keeps each volume whole, as float32
intensities and uint8 labels on disk (`cache/volumes/`, one `.npy` pair a case, memory-mapped,
so a patch is read without reading its volume; a volume of several input channels as one
(C, D, H, W) array). Intensities: an HDF5 volume's as stored (UA-MT's LA files are normalised
already and UA-MT trains on them as they are), a NIfTI volume z-scored on its own, channel by
channel (as UA-MT normalises LA MRI, as nnU-Net's ZScoreNormalization), or, for a set whose
dataset.json names its one channel "CT", as nnU-Net's `CTNormalization`: clipped to the 0.5th
and 99.5th percentiles of the foreground voxels of the training volumes, less their mean, over
their standard deviation.
Splits and selections are those of `PreparedData`, one row per case. With a target spacing
(`data.spacing`, nnU-Net's resampling) the volumes are cached on that grid (images trilinear,
labels nearest) in a folder of their own, beside each label on its own grid, which scoring
uses: a prediction goes back to its volume's grid (`to_shape`) before it is scored.

`PatchBatches` is UA-MT's LA loader (`dataloaders/la_heart.py`): per volume a rotation by k·90°
in the axial (H, W) plane and a flip along H or W (`RandomRotFlip`), then a random crop of the
patch, the volume zero-padded first where it is smaller (`RandomCrop`); labelled and unlabelled
volumes in one batch, an epoch one pass over the labelled ones.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clcc.config import Config
from clcc.data.loaders import epoch_generator
from clcc.data.prepare import PreparedData, _cases, _manifest, _read_list, check_splits
from clcc.data.sources import Case
from clcc.data.volumes import HDF5_SUFFIXES, Volume, read_volume, to_label_map
from clcc.errors import ClccError
from clcc.files import staged_into, write_json
from clcc.labels import LabelSpace

CACHE = "volumes"


def _fingerprint(cases: list[Case], modality: str | None = None, train: list[str] = ()
                 ) -> str:
    """Changes with any source file, and for CT with the training volumes (its statistics)."""
    ct = f"|CT|{','.join(train)}" if modality == "CT" else ""
    h = hashlib.sha256(b"volumes-v1" + ct.encode())
    for case in cases:
        for path in (*case.channel_files, case.mask):
            if path is None:
                h.update(b"-")
                continue
            st = Path(path).stat()
            h.update(f"{case.name}|{path}|{st.st_size}|{st.st_mtime_ns}|{case.slice_axis}"
                     .encode())
    return h.hexdigest()


def normalised(voxels: np.ndarray, path: Path,
               ct: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """float32 (D, H, W): an HDF5 volume as stored, a NIfTI one z-scored, or with `ct` (0.5th
    and 99.5th percentiles, mean, std of the training foreground) clipped and scaled."""
    voxels = np.asarray(voxels, np.float32)
    if not np.isfinite(voxels).all():
        raise ClccError(f"{path}: the volume holds NaN or infinite values")
    if ct is not None:
        low, high, mean, std = ct
        return (np.clip(voxels, low, high) - mean) / std
    if Path(path).name.lower().endswith(HDF5_SUFFIXES):
        return voxels
    return (voxels - voxels.mean()) / max(float(voxels.std()), 1e-8)


def resampled_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]
                    ) -> tuple[int, ...]:
    """The (D, H, W) a volume of `shape` at `spacing` has at `target` spacing (at least 1)."""
    return tuple(max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target,
                                                              strict=True))


def to_shape(array: np.ndarray | torch.Tensor, shape: Sequence[int], labels: bool = False
             ) -> torch.Tensor:
    """(C, D, H, W) intensities or probabilities → (C, *shape), trilinear; `labels`: a label
    map, nearest. An array already of that shape comes back as it is."""
    x = torch.as_tensor(array)
    if tuple(x.shape[1:]) == tuple(shape):
        return x
    if labels:
        return F.interpolate(x[None].float(), size=tuple(shape), mode="nearest")[0].to(x.dtype)
    return F.interpolate(x[None].float(), size=tuple(shape), mode="trilinear",
                         align_corners=False)[0]


def at_spacing(image: np.ndarray, spacing: tuple[float, ...] | None, target: Sequence[float],
               path: Path) -> np.ndarray:
    """A (C, D, H, W) volume at `spacing` resampled to `target` (trilinear)."""
    if spacing is None:
        raise ClccError(f"{path}: no voxel spacing in the file; data.spacing resamples NIfTI "
                        "volumes only")
    return to_shape(image, resampled_shape(image.shape[1:], spacing, target)).numpy()


def intensities(volumes: Sequence[Volume], paths: Sequence[Path],
                ct: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """What a 3-D network takes of a volume read one file per input channel (`paths[i]` is
    `volumes[i]`'s file, for messages): float32 (C, D, H, W), each channel normalised as its
    training volumes were (`ct`: the training set's CT statistics, kept in checkpoints);
    channels that do not share one grid are refused. The caller reads the files, once, and
    keeps the first's spacing."""
    channels = [normalised(v.voxels, p, ct) for v, p in zip(volumes, paths, strict=True)]
    for path, channel in zip(paths[1:], channels[1:], strict=True):
        if channel.shape != channels[0].shape:
            raise ClccError(f"{path}: volume {channel.shape} but the first input channel "
                            f"{paths[0].name} is {channels[0].shape}")
    return np.stack(channels)


FOREGROUND_SAMPLE = 10_000_000
"""Foreground voxels CT statistics are computed from at most (an even stride beyond)."""


def ct_statistics(cases: list[Case]) -> tuple[float, float, float, float]:
    """(0.5th percentile, 99.5th percentile, mean, std) of the foreground voxels of `cases`
    (nnU-Net's dataset fingerprint for `CTNormalization`), raw intensities."""
    voxels = []
    for case in cases:
        image = read_volume(case.image, "image", case.slice_axis).voxels
        truth = read_volume(case.mask, "label", case.slice_axis).voxels
        voxels.append(np.asarray(image, np.float32)[np.asarray(truth) > 0])
    values = np.concatenate(voxels) if voxels else np.zeros(1, np.float32)
    values = values[:: max(1, len(values) // FOREGROUND_SAMPLE)]
    low, high = (float(v) for v in np.percentile(values, (0.5, 99.5)))
    return low, high, float(values.mean()), max(float(values.std()), 1e-8)


def cache_folder(root: Path, spacing: Sequence[float] | None = None) -> Path:
    """`cache/volumes`, or for a target spacing of (1, 0.8, 0.8) mm `cache/volumes-1x0.8x0.8`."""
    name = CACHE + ("-" + "x".join(f"{s:g}" for s in spacing) if spacing else "")
    return Path(root) / "cache" / name


def build_volume_cache(root: Path, cases: list[Case], labels: LabelSpace,
                       modality: str | None = None, train: list[str] = (),
                       spacing: Sequence[float] | None = None) -> None:
    target = cache_folder(root, spacing)
    meta = {"fingerprint": _fingerprint(cases, modality, train), "names": [], "shapes": [],
            "spacing": [], **({"target_spacing": list(spacing)} if spacing else {})}
    ct = None
    if modality == "CT":
        ct = ct_statistics([c for c in cases if c.name in set(train) and c.mask is not None])
        meta["ct"] = list(ct)
    with staged_into(target, last="meta.json") as tmp:
        for case in cases:
            files = case.channel_files
            volumes = [read_volume(f, "image", case.slice_axis) for f in files]
            volume = volumes[0]
            image = (intensities(volumes, files) if case.extra_channels
                     else normalised(volume.voxels, case.image, ct))  # (C, D, H, W) or (D, H, W)
            native = image.shape[-3:]
            if spacing:
                image = at_spacing(image.reshape(-1, *native), volume.spacing, spacing,
                                   case.image)
            if case.mask is not None:
                truth = read_volume(case.mask, "label", case.slice_axis).voxels
                if truth.shape != native:
                    raise ClccError(f"{case.mask}: label volume {truth.shape} but its image is "
                                    f"{native}")
                label_map = to_label_map(truth, case.mask, labels.classes)
                if spacing:
                    np.save(tmp / f"{case.name}.native.npy", label_map)
                    label_map = to_shape(label_map[None], image.shape[-3:], labels=True)[0]
                np.save(tmp / f"{case.name}.label.npy", np.asarray(label_map))
            np.save(tmp / f"{case.name}.image.npy", image)
            meta["names"].append(case.name)
            meta["shapes"].append(list(native))
            meta["spacing"].append(volume.spacing)
        write_json(tmp / "meta.json", meta)


@dataclass
class VolumeData(PreparedData):
    """A prepared set as whole volumes: `images[i]` float32 (D, H, W), or (C, D, H, W) for
    several input channels (`image(i)` gives both as the latter), and `masks[i]` uint8
    (D, H, W) (None without a label) of case `names[i]`, memory-mapped; `rows` one per case, so
    every split and selection of `PreparedData` names case indices. `window` and `overlap`:
    the sliding window a volume is scored with (the training patch)."""

    window: tuple[int, ...] = ()
    overlap: tuple[float, ...] | None = None
    ct: tuple[float, float, float, float] | None = None  # a CT set's intensity statistics
    natives: list[np.ndarray | None] | None = None  # labels on their own grid, when resampled

    @classmethod
    def open_volumes(cls, root: Path, window: tuple[int, ...] = (),
                     overlap: tuple[float, ...] | None = None,
                     spacing: Sequence[float] | None = None) -> VolumeData:
        root = Path(root)
        manifest = _manifest(root)
        cases = _cases(manifest)
        labels = LabelSpace.from_dict(manifest.get("labels"))
        folder = cache_folder(root, spacing)
        meta_path = folder / "meta.json"
        modality = manifest.get("modality")
        train = _read_list(root / "splits" / "train.txt")
        if not meta_path.exists() or json.loads(meta_path.read_text())["fingerprint"] != (
                _fingerprint(cases, modality, train)):
            build_volume_cache(root, cases, labels, modality, train, spacing)
        check_splits(root, cases)
        meta = json.loads(meta_path.read_text())

        def labels_in(suffix: str) -> list[np.ndarray | None]:
            return [np.load(folder / f"{n}.{suffix}.npy", mmap_mode="r")
                    if (folder / f"{n}.{suffix}.npy").exists() else None
                    for n in meta["names"]]

        masks = labels_in("label")
        return cls(root=root, size=0, names=meta["names"],
                   images=[np.load(folder / f"{n}.image.npy", mmap_mode="r")
                           for n in meta["names"]],
                   masks=masks, labels=labels, rows=[range(i, i + 1)
                                                     for i in range(len(meta["names"]))],
                   native_shapes=meta["shapes"], spacings=meta["spacing"],
                   window=tuple(window), overlap=tuple(overlap) if overlap else None,
                   ct=tuple(meta["ct"]) if meta.get("ct") else None,
                   natives=labels_in("native") if spacing else None)

    @property
    def channels(self) -> int:
        return int(self.images[0].shape[0]) if self.images and self.images[0].ndim == 4 else 1

    def image(self, i: int) -> np.ndarray:
        """Case `i`'s intensities (C, D, H, W), memory-mapped."""
        return self.images[i] if self.images[i].ndim == 4 else self.images[i][None]

    @property
    def spatial_dims(self) -> int:
        return 3

    def native(self, name: str) -> np.ndarray:
        """The label volume (D, H, W) on the volume's own grid, which scores are taken on."""
        mask = (self.natives or self.masks)[self._position(name)]
        if mask is None:
            raise ClccError(f"{self.root}: case {name!r} has no label volume")
        return np.asarray(mask)


def rot_flip(volumes: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same k·90° turn in the (H, W) plane and flip along H or W for every array
    (…, D, H, W) of a case (UA-MT's `RandomRotFlip`)."""
    k, axis = int(rng.integers(0, 4)), int(rng.integers(1, 3)) - 3  # H or W
    return [np.flip(np.rot90(v, k, axes=(-2, -1)), axis=axis) for v in volumes]


def random_crop(volumes: list[np.ndarray], patch: tuple[int, int, int],
                rng: np.random.Generator, around_foreground: bool = False) -> list[np.ndarray]:
    """One random `patch` (D, H, W) of every array (…, D, H, W) of a case; where the volume is
    smaller it is first zero-padded to the patch plus 3 voxels a side (UA-MT's `RandomCrop`).
    With `around_foreground` (and a label (1, D, H, W) as the last array holding any), the
    patch is centred on a random foreground voxel, as far as the volume allows (nnU-Net's
    oversampling)."""
    shape = volumes[0].shape[-3:]
    pads = [max((p - s) // 2 + 3, 0) if s <= p else 0 for s, p in zip(shape, patch,
                                                                      strict=True)]
    if any(pads):
        volumes = [np.pad(v, [(0, 0)] * (v.ndim - 3) + [(q, q) for q in pads]) for v in volumes]
        shape = volumes[0].shape[-3:]
    starts = [int(rng.integers(0, s - p)) if s > p else 0 for s, p in zip(shape, patch,
                                                                          strict=True)]
    foreground = (np.argwhere(volumes[-1].reshape(shape) > 0)
                  if around_foreground and len(volumes) > 1 else [])
    if len(foreground):
        centre = foreground[int(rng.integers(0, len(foreground)))]
        starts = [int(np.clip(c - p // 2, 0, s - p)) for c, s, p in zip(centre, shape, patch,
                                                                        strict=True)]
    window = (..., *(slice(a, a + p) for a, p in zip(starts, patch, strict=True)))
    return [np.ascontiguousarray(v[window]) for v in volumes]


class PatchBatches:
    """Yields {"image": float32 (B, C, D, H, W), "mask": uint8 (B, D, H, W), "image_u": float32
    (B', C, D, H, W)} of random patches, augmented on the host; `len` steps an epoch (one pass over
    the labelled volumes; the unlabelled stream cycles). `foreground`: the fraction of each
    labelled batch (its last patches) centred on foreground, nnU-Net's 1/3 (0: UA-MT's
    uniform crops). With several processes (torchrun) each rank takes every `world`-th batch
    of the epoch's one order, its patches drawn by a generator of that batch's own (one
    process draws all from one stream)."""

    def __init__(self, data: VolumeData, labelled: np.ndarray, unlabelled: np.ndarray,
                 patch: tuple[int, int, int], labelled_batch: int, unlabelled_batch: int,
                 seed: int, augment: bool = True, drop_last: bool = False,
                 foreground: float = 0.0, rank: int = 0, world: int = 1) -> None:
        if len(labelled) == 0:
            raise ValueError("the labelled subset is empty")
        self.data, self.patch = data, tuple(patch)
        self.labelled, self.unlabelled = np.asarray(labelled), np.asarray(unlabelled)
        self.labelled_batch = labelled_batch
        self.unlabelled_batch = unlabelled_batch if len(self.unlabelled) else 0
        self.seed, self.augment, self.drop_last = seed, augment, drop_last
        self.foreground, self.rank, self.world = foreground, rank, world

    @property
    def global_steps_per_epoch(self) -> int:
        if self.drop_last:
            return max(1, len(self.labelled) // self.labelled_batch)
        return math.ceil(len(self.labelled) / self.labelled_batch)

    def __len__(self) -> int:
        """Steps per epoch on this rank (ranks get equal counts; the tail is shared out)."""
        return math.ceil(self.global_steps_per_epoch / self.world)

    def _patch(self, case: int, rng: np.random.Generator, around_foreground: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
        image = np.asarray(self.data.image(case))
        mask = self.data.masks[case]
        arrays = [image] + ([np.asarray(mask)[None]] if mask is not None else [])
        if self.augment:
            arrays = rot_flip(arrays, rng)
        arrays = random_crop(arrays, self.patch, rng, around_foreground)
        return arrays[0], (arrays[1][0] if len(arrays) > 1
                           else np.zeros(arrays[0].shape[1:], np.uint8))

    def epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        g = epoch_generator(self.seed, epoch)
        base = int(torch.randint(0, 2**31, (), generator=g))
        rng = np.random.default_rng(base)
        order = self.labelled[rng.permutation(len(self.labelled))]
        bu = self.unlabelled_batch
        stream = (self.unlabelled[rng.permutation(len(self.unlabelled))]
                  if bu else np.empty(0, np.int64))
        steps = self.global_steps_per_epoch
        for step in range(self.rank, len(self) * self.world, self.world):
            if self.world > 1:  # a batch's patches do not depend on the batches of other ranks
                rng = np.random.default_rng([base, step])
            first = (step % steps) * self.labelled_batch  # beyond the last: wrap around
            chosen = order[first:first + self.labelled_batch]
            uniform = len(chosen) - round(self.foreground * len(chosen))
            pairs = [self._patch(int(i), rng, j >= uniform) for j, i in enumerate(chosen)]
            batch = {"image": torch.from_numpy(np.stack([p[0] for p in pairs])),
                     "mask": torch.from_numpy(np.stack([p[1] for p in pairs]))}
            if bu:
                picks = [stream[(step * bu + j) % len(stream)] for j in range(bu)]
                batch["image_u"] = torch.from_numpy(np.stack(
                    [self._patch(int(i), rng)[0] for i in picks]))
            yield batch


def to_device(host: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A patch batch as a step takes it: "image"/"image_u" float (B, C, D, H, W), "mask"
    float (B, 1, D, H, W) (patches come augmented and normalised from the host)."""
    batch = {"image": host["image"].to(device, non_blocking=True),
             "mask": host["mask"][:, None].to(device, non_blocking=True).float()}
    if "image_u" in host:
        batch["image_u"] = host["image_u"].to(device, non_blocking=True)
    return batch


def open_prepared(root: Path, spatial_dims: int, size: int, resample: str = "bilinear",
                  patch: tuple[int, ...] = (), overlap: tuple[float, ...] | None = None,
                  spacing: Sequence[float] | None = None) -> PreparedData:
    """A prepared set as a network of `spatial_dims` takes it: 2-D slices or images at `size`,
    or (3) whole volumes (at `spacing`, when given) scored by a sliding window of `patch`."""
    if spatial_dims == 3:
        return VolumeData.open_volumes(Path(root), tuple(patch), overlap, spacing)
    return PreparedData.open(Path(root), size, resample)


def open_configured(cfg: Config, root: Path | str | None = None) -> PreparedData:
    """The prepared set at `root` (default: the run's `data.root`) as the run `cfg` trains on
    and scores it: its network's dimensions, size, resampling, patch, windows and spacing."""
    data = cfg.data
    return open_prepared(Path(root or data.root), cfg.model.spatial_dims, data.size,
                         data.resample, tuple(data.patch or ()), data.window_overlap,
                         data.spacing)
