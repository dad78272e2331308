"""Raw layout → prepared data set: a manifest, plain-text splits, and cached arrays.

The split depends only on the sorted case names and the seeds: each name is ranked by the
SHA-256 of "seed:name", which is the same on every machine and library version (and adding a
case does not reshuffle the others). The labelled subset of the training split is drawn the same
way with a *selection seed*, separate from the split seed, as the paper averages 3 selections.

Layout of a prepared folder::

    manifest.json            source, cases (name, image, mask), seeds
    splits/train.txt         one case name per line; users may edit these lists
    splits/val.txt, test.txt
    splits/unlabelled.txt    cases without a mask (join the unlabelled training pool)
    splits/labelled-K.txt    the labelled subset of train for selection seed K
    cache/<size>/            images.npy (N,S,S,C) uint8, masks.npy (N,S,S) uint8, meta.json;
                             a volume set also native.npy (its label volumes, flat)

A case is a 2-D image or a volume; the cache holds slices (a 2-D image is one), and the split
lists name cases. Splits and labelled subsets are drawn over *groups* (a patient's frames), so
the slices of one volume, and the volumes of one patient, never sit in two splits. A data set
that publishes its split (ACDC's SSL4MIS lists) is prepared with it, and selection 0 takes its
published labelled order.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import math
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clcc.config import MAX_SIZE
from clcc.data.decode import Decoded, load_case
from clcc.data.layouts import read_layout
from clcc.data.sources import Case, Layout
from clcc.data.volumes import available_memory
from clcc.errors import ClccError
from clcc.files import claim, staged_into, write_json, write_text
from clcc.labels import BINARY, LabelSpace

MANIFEST = "manifest.json"
FILE_DIGESTS = "file-digests.json"  # in cache/: `_FileDigests`
PR_SET_PDEATHSIG = 1  # prctl(2)
SIGNAL_MASKS = hasattr(signal, "pthread_sigmask")  # not on Windows
MASK_RESAMPLING = "nearest"  # part of the cache fingerprint: caches of bilinear masks rebuild
DEFAULT_SELECTIONS = (0, 1, 2)


def _rank(names: list[str], salt: str) -> list[str]:
    return sorted(names, key=lambda n: hashlib.sha256(f"{salt}:{n}".encode()).hexdigest())


def split_cases(
    names: list[str], fractions: tuple[float, float, float], seed: int
) -> dict[str, list[str]]:
    """Deterministic train/val/test split of the labelled case names (each list sorted)."""
    if (len(fractions) != 3 or not all(math.isfinite(f) for f in fractions)
            or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6):
        raise ClccError(f"split fractions {fractions} must be three numbers summing to 1")
    ranked = _rank(sorted(names), f"split:{seed}")
    n_val = round(fractions[1] * len(ranked))
    n_test = round(fractions[2] * len(ranked))
    parts = {
        "val": ranked[:n_val],
        "test": ranked[n_val : n_val + n_test],
        "train": ranked[n_val + n_test :],
    }
    empty = [k for k in ("train", "val", "test") if not parts[k]]
    if empty:
        raise ClccError(f"split fractions {','.join(f'{f:g}' for f in fractions)} of "
                        f"{len(names)} labelled cases leave the {' and '.join(empty)} split "
                        "empty; training needs train, validation (to choose the checkpoint) and "
                        "test cases")
    return {k: sorted(v) for k, v in parts.items()}


def labelled_count(spec: float, n_train: int) -> int:
    """`spec` is a whole count (>= 1) or a fraction of the training split in (0, 1)."""
    check_labelled(spec)
    count = round(spec * n_train) if spec < 1 else int(spec)
    if not 1 <= count <= n_train:
        raise ClccError(f"labelled subset {spec} gives {count} of {n_train} training cases")
    return count


def check_labelled(spec: float) -> None:
    """Refuse what is neither a whole count >= 1 nor a fraction in (0, 1): 2.7 would silently
    become 2; nan, inf, 0 and negatives mean nothing."""
    if not (math.isfinite(spec) and (0 < spec < 1 or (spec >= 1 and float(spec).is_integer()))):
        raise ClccError(f"labelled subset {spec:g}: give a whole count (120) or a fraction of "
                        "the training split between 0 and 1 (0.2)")


def select_labelled(train: list[str], count: int, selection: int,
                    order: list[str] | None = None) -> list[str]:
    """`count` of the training groups `train`: ranked by the selection seed, or with `order`
    (a data set's published labelled order) for selection 0 the first of it."""
    if order is not None and selection == 0:
        return sorted(order[:count])
    return sorted(_rank(sorted(train), f"select:{selection}")[:count])


def plan_splits(layout: Layout, fractions: tuple[float, float, float], seed: int
                ) -> dict[str, list[str]]:
    """train/val/test case names: the layout's published split, or drawn over its groups."""
    if layout.splits is not None:
        return {k: sorted(v) for k, v in layout.splits.items()}
    labelled = [c for c in layout.cases if c.mask is not None]
    units = split_cases(sorted({c.unit for c in labelled}), fractions, seed)
    return {k: sorted(c.name for c in labelled if c.unit in set(v)) for k, v in units.items()}


def _members(cases: list[Case], units: list[str]) -> list[str]:
    chosen = set(units)
    return sorted(c.name for c in cases if c.unit in chosen)


def _read_list(path: Path) -> list[str]:
    """The case names of a split list, refusing a BOM, undecodable text and repeated names."""
    if not path.exists():
        raise ClccError(f"{path}: split list not found; run `clcc data prepare` first")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raise ClccError(f"{path}: starts with a byte-order mark (BOM), as some editors save; "
                        "save it as plain UTF-8 without BOM")
    try:
        names = [line.strip() for line in raw.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as err:
        raise ClccError(f"{path}: not UTF-8 text ({err})") from err
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ClccError(f"{path}: case {name!r} is listed twice; each case once")
        seen.add(name)
    return names


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def is_prepared(folder: Path) -> bool:
    """Whether `folder` is a prepared set (what `data prepare` may write again)."""
    return (Path(folder) / MANIFEST).is_file()


def check_output(source: Path, output: Path, *, overwrite: bool) -> dict | None:
    """Refuse, before anything is touched, every output whose writing would lose data, and
    return the manifest of the prepared set already there (None when there is none).

    The output may be absent, an empty folder, or a prepared set: of the same source, or of
    another one with `overwrite`; it never is, holds or lies inside the source. Re-preparing
    replaces only the manifest, the split lists and the cache (other files stay), and refuses to
    replace a split list edited by hand since it was written unless `overwrite` is given.
    """
    claim(output, "data prepare", inputs=[source], ours=is_prepared)
    if not is_prepared(output):
        return None
    manifest = Path(output) / MANIFEST
    try:
        previous = json.loads(manifest.read_text())
        previous_source = previous["source"]
    except (ValueError, KeyError, TypeError) as err:
        raise ClccError(f"{manifest}: unreadable manifest; not replacing {output}") from err
    if previous_source != str(Path(source).resolve()) and not overwrite:
        raise ClccError(
            f"{output}: already a prepared set of another source ({previous_source}); "
            "pass --overwrite to replace it"
        )
    return previous


def edited_lists(output: Path, previous: dict, new: dict[str, str]) -> list[str]:
    """Split lists of `output` that differ from what `data prepare` last wrote there (its
    recorded digests; a set prepared before digests were recorded: from what it writes now)."""
    recorded = previous.get("lists") or {}
    edited = []
    for relative in sorted(set(recorded) | set(new)):
        now = _digest(Path(output) / relative)
        expected = recorded.get(relative, new.get(relative))
        if now is not None and now != expected:
            edited.append(relative)
    return edited


def prepare(
    kind: str,
    source: Path,
    output: Path,
    *,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    labelled: float = 0.2,
    selections: tuple[int, ...] = DEFAULT_SELECTIONS,
    split_seed: int = 0,
    size: int | None = 320,
    workers: int | None = None,
    overwrite: bool = False,
    classes: tuple[str, ...] | None = None,
    resample: str = "bilinear",
) -> dict[str, int]:
    """Scan `source`, validate every case, write the prepared folder atomically.

    `classes` names the foreground classes of label-map masks (values 1, 2, …; 0 is
    background), recorded in the manifest as dataset.json-style `labels`; without it the masks
    are binary, read as `read_mask` does. `resample` is how the cache at `size` resizes the
    images (a training config with another `data.resample` builds its own cache).

    Returns the split sizes. With `size`, every image and mask is decoded and cached (which is
    also what validates them); nothing is written unless all cases are good.
    """
    check_size(size)
    previous = check_output(Path(source), Path(output), overwrite=overwrite)
    layout = read_layout(kind, Path(source))
    if size and not layout.volumetric:
        check_cache_memory(len(layout.cases), size, layout.channels)
    classes = classes or layout.classes
    try:
        labels = LabelSpace.from_names(classes).as_dict() if classes else None
    except ValueError as err:
        raise ClccError(f"--classes {','.join(classes or ())}: {err}") from err
    cases = layout.cases
    splits = plan_splits(layout, fractions, split_seed)
    lists, count = _split_lists(layout, splits, labelled, selections)
    output = Path(output)
    texts = {relative: "".join(f"{n}\n" for n in names) for relative, names in lists.items()}
    digests = {r: hashlib.sha256(t.encode()).hexdigest() for r, t in texts.items()}
    edited = edited_lists(output, previous, digests) if previous else []
    if edited and not overwrite:
        raise ClccError(f"{output}: {', '.join(edited)} edited by hand since `clcc data prepare` "
                        "wrote it; pass --overwrite to replace it, or prepare into a new folder")
    with staged_into(output, last=MANIFEST) as tmp:
        for relative, text in texts.items():
            write_text(tmp / relative, text)
        depths = (build_cache(tmp, size, workers=workers, cases=cases, labels=labels,
                              channels=layout.channels, resample=resample) if size else {})
        write_json(
            tmp / MANIFEST,
            {
                "version": 1,
                "kind": kind,
                "source": str(Path(source).resolve()),
                "split_seed": split_seed,
                "fractions": list(fractions),
                "labelled": labelled,
                "selections": list(selections),
                **({"split": "published"} if layout.splits is not None else {}),
                **({"labels": labels} if labels else {}),
                **({"channels": layout.channels} if layout.channels != 3 else {}),
                **({"volumetric": True} if layout.volumetric else {}),
                **({"modality": layout.modality} if layout.modality else {}),
                "lists": digests,
                "cases": [_case_entry(c) for c in cases],
            },
        )
    for stale in set((previous or {}).get("lists") or {}) - set(texts):
        (output / stale).unlink(missing_ok=True)  # a list it wrote before (unedited, or
        # --overwrite) that this selection set no longer has
    return _summary(cases, splits, lists, count, depths, selections)


def check_size(size: int | None) -> None:
    if size is not None and not 0 <= size <= MAX_SIZE:
        raise ClccError(f"--size {size}: give the cache side in pixels, 1 … {MAX_SIZE} (0: no "
                        "cache yet)")


def check_cache_memory(cases: int, size: int, channels: int,
                       available: int | None = None) -> None:
    """Refuse, before decoding, a 2-D cache that cannot be held in memory: the images and
    masks of every case at size², put together once in memory before they are saved."""
    need = cases * size * size * (channels + 1)
    available = available_memory() if available is None else available
    if available is not None and need > available:
        raise ClccError(f"--size {size}: the cache of {cases} images would need "
                        f"{need / 2**30:.1f} GiB of memory, {available / 2**30:.1f} GiB is "
                        "available; choose a smaller --size")


def _split_lists(layout: Layout, splits: dict[str, list[str]], labelled: float,
                 selections: tuple[int, ...]) -> tuple[dict[str, list[str]], int]:
    """Every split list to write (relative path → case names), and how many training groups
    each labelled subset holds."""
    by_name = {c.name: c for c in layout.cases}
    train = [by_name[n] for n in splits["train"]]
    train_units = sorted({c.unit for c in train})
    count = labelled_count(labelled, len(train_units))
    lists = {f"splits/{split}.txt": names for split, names in splits.items()}
    lists["splits/unlabelled.txt"] = [c.name for c in layout.cases if c.mask is None]
    order = [u for u in layout.order if u in set(train_units)] if layout.order else None
    for k in selections:
        lists[f"splits/labelled-{k}.txt"] = _members(
            train, select_labelled(train_units, count, k, order))
    return lists, count


def _summary(cases: list[Case], splits: dict[str, list[str]], lists: dict[str, list[str]],
             count: int, depths: dict[str, int], selections: tuple[int, ...]) -> dict[str, int]:
    """Split sizes in cases; for a set of volumes or patients also in groups and slices."""
    summary = {k: len(v) for k, v in splits.items()}
    summary["labelled"] = len(lists[f"splits/labelled-{selections[0]}.txt"]) if selections else 0
    summary["unlabelled"] = len(splits["train"]) - summary["labelled"] + len(
        lists["splits/unlabelled.txt"])
    if any(c.group for c in cases) or any(d != 1 for d in depths.values()):
        unit = {c.name: c.unit for c in cases}
        for split, names in splits.items():
            summary[f"{split}_groups"] = len({unit[n] for n in names})
            if depths:
                summary[f"{split}_slices"] = sum(depths[n] for n in names)
        summary["labelled_groups"] = count
        if depths and selections:
            summary["labelled_slices"] = sum(
                depths[n] for n in lists[f"splits/labelled-{selections[0]}.txt"])
    return summary


def _case_entry(case: Case) -> dict:
    entry = {"name": case.name, "image": str(case.image.resolve()),
             "mask": str(case.mask.resolve()) if case.mask else None}
    if case.group:
        entry["group"] = case.group
    if case.slices:
        entry["slices"] = [str(p.resolve()) for p in case.slices]
    if case.slice_axis:
        entry["slice_axis"] = case.slice_axis
    if case.extra_channels:
        entry["channels"] = [str(p.resolve()) for p in case.extra_channels]
    return entry


def _manifest(prepared: Path) -> dict:
    path = Path(prepared) / MANIFEST
    if not path.exists():
        raise ClccError(
            f"{prepared}: not a prepared data set (no {MANIFEST}); run `clcc data prepare`"
        )
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ClccError(f"{path}: unreadable manifest ({err}); prepare the set again") from err


def _cases(manifest: dict) -> list[Case]:
    return [
        Case(c["name"], Path(c["image"]), Path(c["mask"]) if c["mask"] else None,
             c.get("group"), tuple(Path(p) for p in c.get("slices", ())),
             c.get("slice_axis", 0), tuple(Path(p) for p in c.get("channels", ())))
        for c in manifest["cases"]
    ]


def _fingerprint(cases: list[Case], size: int, resample: str = "bilinear",
                 known_by: Callable[[Path], str] | None = None) -> str:
    """Changes when any source file is replaced, touched, added or removed, or the size or the
    image resampling changes (bilinear caches keep the digest they had before it was a
    choice). `known_by` names a file otherwise than by its path, size and modification time
    (`data_fingerprint`'s contents)."""
    images = "" if resample == "bilinear" else f"|images={resample}"
    h = hashlib.sha256(f"size={size}|masks={MASK_RESAMPLING}{images}".encode())
    for case in cases:
        for path in case.slices or (case.image, case.mask):
            if path is None:
                h.update(b"-")
                continue
            try:
                st = path.stat()
            except FileNotFoundError as err:
                raise ClccError(f"{path}: source file of case {case.name!r} is missing") from err
            name = known_by(path) if known_by else f"{path}|{st.st_size}|{st.st_mtime_ns}"
            h.update(f"{case.name}|{name}".encode())
    return h.hexdigest()


def data_fingerprint(root: Path, size: int, selection: int, resample: str = "bilinear",
                     contents: bool = False) -> str:
    """What a run trains and is scored on, in one digest: the source files (paths, sizes,
    modification times), the resolution, and the split lists of `selection`. A run remembers
    it, so a resume or a grid notices a set re-prepared under the same path. With `contents`
    the files are known by their bytes instead, so that a copy (new times, another folder)
    reads as the same data (`DataIdentity`)."""
    root = Path(root)
    manifest = _manifest(root)
    known_by = _FileDigests(root / "cache" / FILE_DIGESTS) if contents else None
    h = hashlib.sha256(_fingerprint(_cases(manifest), size, resample, known_by).encode())
    if known_by:
        known_by.save()
    if manifest.get("labels"):  # a binary set's digest stays what it was before classes
        h.update(json.dumps(manifest["labels"], sort_keys=True).encode())
    for name in ("train", "val", "test", "unlabelled", f"labelled-{selection}"):
        h.update(f"\n{name}:".encode() + "\n".join(_read_list(root / "splits" / f"{name}.txt"))
                 .encode())
    return h.hexdigest()


class DataIdentity:
    """The data a run trains on, as the run records it: `fingerprint` (source paths, sizes,
    modification times, split lists: cheap) and `contents` (the files known by their bytes),
    each worked out once, and only when asked for. `matches` tells a run made on this data, or
    on a copy of it with the same bytes."""

    def __init__(self, root: Path, size: int, selection: int, resample: str = "bilinear") -> None:
        self.where = (Path(root), size, selection, resample)

    @functools.cached_property
    def fingerprint(self) -> str:
        return data_fingerprint(*self.where)

    @functools.cached_property
    def contents(self) -> str:
        return data_fingerprint(*self.where, contents=True)

    def record(self) -> dict[str, str]:
        """What a checkpoint and results.json keep of the data, for `matches` later."""
        return {"data_fingerprint": self.fingerprint, "data_contents": self.contents}

    def matches(self, saved: dict[str, Any]) -> bool:
        """Whether the run or checkpoint `saved` (its `data_fingerprint` and, where it has one,
        `data_contents`: older versions recorded none) was made on this data; one that recorded
        neither is taken as it is. The bytes are read only when the cheap fingerprint differs."""
        return (saved.get("data_fingerprint", "") in ("", self.fingerprint)
                or saved.get("data_contents", "") == self.contents)


class _FileDigests:
    """SHA-256 of each source file, kept by path, size and modification time in the set's
    cache, so that a file is read again only when it is new or touched (a missing or unwritable
    cache costs a re-read, nothing else)."""

    def __init__(self, path: Path) -> None:
        self.path, self.changed = path, False
        try:
            self.known: dict[str, list] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.known = {}

    def __call__(self, file: Path) -> str:
        st = file.stat()
        key = [st.st_size, st.st_mtime_ns]
        entry = self.known.get(str(file))
        if entry is None or entry[:2] != key:
            digest = hashlib.sha256()
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            entry = self.known[str(file)] = [*key, digest.hexdigest()]
            self.changed = True
        return entry[2]

    def save(self) -> None:
        if self.changed:
            with contextlib.suppress(OSError):
                write_json(self.path, self.known)


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Ctrl-C held back (SIGINT blocked) in this thread and in the processes it starts: a
    worker caught between its fork and `die_with_parent` would otherwise die printing a
    traceback on the user's terminal. The main process still gets it, as the block ends (or
    at once, through another of its threads)."""
    if not SIGNAL_MASKS:
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def die_with_parent() -> None:
    """Worker initializer: on Linux the kernel ends a decoding worker when the process that
    started it dies (even by kill -9), so no worker is left decoding for nobody. A worker
    ignores Ctrl-C (held back until now, `ctrl_c_held`): the main process gets it and ends
    the pool (`decode_all`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if SIGNAL_MASKS:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def decode_all(jobs: list[tuple], workers: int) -> list[Decoded | str]:
    """Every job decoded, in order, by `workers` processes. Ctrl-C (or any error) terminates
    the workers at once instead of waiting for the queue to drain: an executor's shutdown
    could wait forever on a worker blocked writing to its result pipe."""
    if workers <= 1:
        return [_load_case_or_error(job) for job in jobs]
    pool = None
    try:
        with ctrl_c_held():
            pool = multiprocessing.Pool(workers, initializer=die_with_parent)
        results = pool.map(_load_case_or_error, jobs, chunksize=8)
        pool.close()
        return results
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    finally:
        if pool is not None:
            pool.join()


def _load_case_or_error(args: tuple[Case, int, dict[str, int] | None, int, str]
                        ) -> Decoded | str:
    try:
        return load_case(*args)
    except ClccError as err:
        return str(err)


def cache_folder(prepared: Path, size: int, resample: str = "bilinear") -> Path:
    """cache/<size> (bilinear images, as every cache before `data.resample`), or
    cache/<size>-nearest."""
    return Path(prepared) / "cache" / (str(size) if resample == "bilinear" else
                                       f"{size}-{resample}")


def build_cache(prepared: Path, size: int, workers: int | None = None,
                cases: list[Case] | None = None, labels: dict[str, int] | None = None,
                channels: int | None = None, resample: str = "bilinear") -> dict[str, int]:
    """Decode every case once at `size`, so that training epochs never decode a JPEG or a
    NIfTI (`cases`, `labels`, `channels`: those of the prepared set's manifest unless given).
    Returns the number of slices of each case."""
    prepared = Path(prepared)
    if cases is None:
        manifest = _manifest(prepared)
        cases, labels = _cases(manifest), manifest.get("labels")
        channels = manifest.get("channels", 3)
    fingerprint = _fingerprint(cases, size, resample)
    target = cache_folder(prepared, size, resample)
    workers = workers or min(4, os.cpu_count() or 1)
    jobs = [(c, size, labels, channels or 3, resample) for c in cases]
    results = decode_all(jobs, workers if len(cases) > 16 else 1)
    errors = [r for r in results if isinstance(r, str)]
    if errors:
        more = f"\n... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise ClccError(f"{len(errors)} bad case(s):\n" + "\n".join(errors[:10]) + more)
    decoded: list[Decoded] = results  # type: ignore[assignment]
    depths = {c.name: len(d.images) for c, d in zip(cases, decoded, strict=True)}
    meta: dict = {"fingerprint": fingerprint, "size": size, "names": [c.name for c in cases]}
    if any(len(d.images) != 1 for d in decoded) or any(d.native is not None for d in decoded):
        meta["depths"] = list(depths.values())
    natives = [d.native for d in decoded]
    if any(n is not None for n in natives):  # label volumes, to score at their own size
        meta["native"] = [None if n is None else list(n.shape) for n in natives]
        meta["spacing"] = [d.spacing for d in decoded]
    with staged_into(target, last="meta.json") as tmp:
        np.save(tmp / "images.npy", np.concatenate([d.images for d in decoded]))
        np.save(tmp / "masks.npy", np.concatenate([d.masks for d in decoded]))
        if "native" in meta:
            np.save(tmp / "native.npy", np.concatenate(
                [n.ravel() for n in natives if n is not None] or [np.empty(0, np.uint8)]))
        write_json(tmp / "meta.json", meta)
    return depths


def check_splits(root: Path, cases: list[Case]) -> None:
    """The lists in splits/ may be edited by hand: every name must be a case of the manifest
    (with a mask, except in unlabelled.txt), train/val/test/unlabelled must not share a case,
    and each labelled-K.txt must lie inside train.txt."""
    splits = Path(root) / "splits"
    known = {c.name: c for c in cases}
    lists = {name: _read_list(splits / f"{name}.txt")
             for name in ("train", "val", "test", "unlabelled")}
    lists.update({p.stem: _read_list(p) for p in sorted(splits.glob("labelled-*.txt"))})
    owner: dict[str, str] = {}
    for name, members in lists.items():
        for case in members:
            if case not in known:
                raise ClccError(f"{splits / name}.txt: unknown case {case!r}")
            if name != "unlabelled" and known[case].mask is None:
                raise ClccError(f"{splits / name}.txt: case {case!r} has no mask")
            if name.startswith("labelled-"):
                continue
            if case in owner:
                raise ClccError(f"{splits / name}.txt: case {case!r} is also in "
                                f"{owner[case]}.txt; the splits must not overlap")
            owner[case] = name
    for name in ("train", "val", "test"):
        if not lists[name]:
            raise ClccError(f"{splits / name}.txt: the {name} split is empty; training needs "
                            "train, validation and test cases")
    for name in (n for n in lists if n.startswith("labelled-")):
        if not lists[name]:
            raise ClccError(f"{splits / name}.txt: the labelled subset is empty; list one or "
                            "more training cases in it, or prepare again")
    group_split: dict[str, tuple[str, str]] = {}
    for name in ("train", "val", "test"):
        for case in lists[name]:
            unit = known[case].unit
            first = group_split.setdefault(unit, (name, case))
            if first[0] != name:
                raise ClccError(f"{splits / name}.txt: case {case!r} and {first[1]!r} "
                                f"({first[0]}.txt) are of one group {unit!r} (one patient); "
                                "a group's cases must share a split")
    train = set(lists["train"])
    for name, members in lists.items():
        outside = [c for c in members if name.startswith("labelled-") and c not in train]
        if outside:
            raise ClccError(f"{splits / name}.txt: case {outside[0]!r} is not in train.txt; "
                            "a labelled subset must come from the training split")


@dataclass
class PreparedData:
    """A prepared data set opened at one resolution: cached slices plus the split indices.

    `names` are the cases; case i owns the slice rows `rows[i]` of `images` and `masks` (a 2-D
    case one row). Split methods return slice rows; `volumes` says whether cases are volumes,
    scored as the field scores them, against `native(name)` at their own resolution."""

    root: Path
    size: int
    names: list[str]
    images: np.ndarray  # (N, S, S, C) uint8 slices, C 3 (RGB) or 1 (grey)
    masks: np.ndarray  # (N, S, S) uint8 label maps, 0 … C − 1 (binary: 0/1)
    labels: LabelSpace = BINARY
    rows: list[range] = field(default_factory=list)
    native_shapes: list[list[int] | None] | None = None
    spacings: list | None = None
    ct: None = None  # slices hold 8-bit grey: no CT intensity statistics (VolumeData's have)

    @classmethod
    def open(cls, root: Path, size: int, resample: str = "bilinear") -> PreparedData:
        """Load the cache at `size` (images resized as `resample` says), (re)building it when
        missing or stale."""
        root = Path(root)
        manifest = _manifest(root)
        cases = _cases(manifest)
        try:
            labels = LabelSpace.from_dict(manifest.get("labels"))
        except ValueError as err:
            raise ClccError(f"{root / MANIFEST}: {err}") from err
        cache = cache_folder(root, size, resample)
        meta_path = cache / "meta.json"
        stale = not meta_path.exists() or (
            json.loads(meta_path.read_text())["fingerprint"]
            != _fingerprint(cases, size, resample)
        )
        if stale:
            build_cache(root, size, resample=resample)
        check_splits(root, cases)
        meta = json.loads(meta_path.read_text())
        starts = np.cumsum([0, *meta.get("depths", [1] * len(meta["names"]))])
        return cls(
            root=root,
            size=size,
            names=meta["names"],
            images=np.load(cache / "images.npy", mmap_mode="r"),
            masks=np.load(cache / "masks.npy", mmap_mode="r"),
            labels=labels,
            rows=[range(a, b) for a, b in zip(starts[:-1], starts[1:], strict=True)],
            native_shapes=meta.get("native"),
            spacings=meta.get("spacing"),
        )

    @property
    def channels(self) -> int:
        return int(self.images.shape[-1])

    @property
    def volumes(self) -> bool:
        return self.native_shapes is not None

    def _position(self, name: str) -> int:
        return self.names.index(name)

    def native(self, name: str) -> np.ndarray:
        """The label volume (D, H, W) of a labelled volume case, at its own resolution."""
        i = self._position(name)
        shapes = self.native_shapes or []
        if shapes[i] is None:
            raise ClccError(f"{self.root}: case {name!r} has no label volume")
        start = sum(int(np.prod(s)) for s in shapes[:i] if s is not None)
        flat = np.load(self.root / "cache" / str(self.size) / "native.npy", mmap_mode="r")
        return np.asarray(flat[start : start + int(np.prod(shapes[i]))]).reshape(shapes[i])

    def spacing(self, name: str) -> tuple[float, float, float] | None:
        value = (self.spacings or [None] * len(self.names))[self._position(name)]
        return tuple(value) if value else None

    def indices(self, names: list[str], what: str) -> np.ndarray:
        """The slice rows of the cases `names`, in their order."""
        position = {n: i for i, n in enumerate(self.names)}
        unknown = [n for n in names if n not in position]
        if unknown:
            raise ClccError(f"{self.root}: {what} lists unknown case {unknown[0]!r}")
        return np.array([r for n in names for r in self.rows[position[n]]], dtype=np.int64)

    def middle_slices(self, names: list[str]) -> np.ndarray:
        """One slice row per case, a volume's middle one (what a figure shows of it)."""
        position = {n: i for i, n in enumerate(self.names)}
        return np.array([self.rows[position[n]][len(self.rows[position[n]]) // 2]
                         for n in names], dtype=np.int64)

    def subset(self, name: str) -> list[str]:
        """The case names of splits/<name>.txt."""
        return _read_list(self.root / "splits" / f"{name}.txt")

    def split(self, name: str) -> np.ndarray:
        """Slice rows of `train`, `val`, `test` or `unlabelled` (from splits/<name>.txt)."""
        return self.indices(self.subset(name), f"{name}.txt")

    def labelled(self, selection: int) -> np.ndarray:
        path = self.root / "splits" / f"labelled-{selection}.txt"
        if not path.exists():
            prepared = sorted(int(p.stem.split("-", 1)[1]) for p in path.parent.glob(
                "labelled-*.txt") if p.stem.split("-", 1)[1].isdigit())
            raise ClccError(f"{path}: selection {selection} was not prepared (prepared: "
                            f"{', '.join(map(str, prepared)) or 'none'}); prepare again with "
                            f"--selections {','.join(map(str, sorted({*prepared, selection})))}")
        return self.indices(_read_list(path), path.name)

    def training_pool(self) -> np.ndarray:
        """Every slice training may see (train split and mask-less cases), sorted."""
        return np.sort(np.concatenate([self.split("train"), self.split("unlabelled")]))

    def unlabelled(self, selection: int) -> np.ndarray:
        """Training slices outside the labelled subset, plus the cases that have no mask."""
        labelled = set(self.labelled(selection).tolist())
        train = [i for i in self.split("train").tolist() if i not in labelled]
        return np.array(train + self.split("unlabelled").tolist(), dtype=np.int64)
