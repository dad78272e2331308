"""The one rule every writer follows, atomic writes and run locks.

A command replaces only what it made itself, recognised by its own marker (the hidden
`.clcc-output.json` it leaves in a folder it writes, a prepared set's manifest, a run's config and
checkpoint, an ONNX file's metadata), never a file or folder it did not write; an output never
is, holds or lies inside one of the command's inputs (`claim`). Files are written under a
temporary name beside the target and renamed, so a reader never sees a half-written output,
even after a crash (`atomic_path`, `staged_into`). Run locks: two processes never write one
run folder (`exclusive`).

Temporary names are not made with `mkstemp`/`mkdtemp`: those create mode 0600/0700, which the
rename would carry onto every checkpoint, table and report, unreadable to anyone else on a shared
server. The writer creates the temporary file itself, so the user's umask applies.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from clcc.errors import ClccError

try:
    import fcntl
except ImportError:  # Windows has no flock: runs are not guarded there
    fcntl = None  # type: ignore[assignment]


OUTPUT_MARKER = ".clcc-output.json"
"""Left in every folder a command writes as a whole: which command made it."""


def _temporary_name(target: Path) -> Path:
    """A fresh hidden name beside `target` (same file system, so the final rename is atomic)."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")


def remove_leftovers(target: Path) -> None:
    """Remove what a killed write of `target` left beside it (`.NAME.<12 hex>.tmp`, `.old`)."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[0-9a-f]{{12}}\.(tmp|old)$")
    for path in target.parent.iterdir():
        if pattern.match(path.name):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def check_apart(output: Path, inputs: Iterable[Path | None]) -> None:
    """Refuse an output that is, holds or lies inside one of the inputs."""
    out = Path(output).resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if out == source or source.is_relative_to(out) or out.is_relative_to(source):
            raise ClccError(f"{output}: the output is, holds or lies inside the input {given}; "
                            "writing there could replace your files, choose another output")


def _marker(folder: Path) -> dict[str, Any]:
    """The marker `folder` holds (empty when it has none, or an unreadable one)."""
    try:
        marker = json.loads((Path(folder) / OUTPUT_MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def made_by(folder: Path) -> str | None:
    """The command whose marker `folder` holds, if any."""
    return _marker(folder).get("command")


def claim(target: Path, command: str, inputs: Iterable[Path | None] = (),
          ours: Callable[[Path], bool] | None = None) -> None:
    """Refuse, before anything is written, a `target` that `command` may not replace.

    Allowed: absent, an empty folder, a folder with `command`'s marker, or what `ours` says
    `command` made itself (a prepared set's manifest, a run). `--overwrite` never widens this.
    Also removes the leftovers of an earlier killed write of `target`.
    """
    target = Path(target)
    check_apart(target, inputs)
    if not target.exists() and not target.is_symlink():
        remove_leftovers(target)
        return
    if target.is_dir() and not target.is_symlink():
        if not any(target.iterdir()) or made_by(target) == command or (ours and ours(target)):
            remove_leftovers(target)
            return
        raise ClccError(f"{target}: a non-empty folder that `clcc {command}` did not make; it is "
                        "left untouched, choose a new or empty folder")
    if ours and ours(target):
        remove_leftovers(target)
        return
    raise ClccError(f"{target}: exists and was not written by `clcc {command}`; it is left "
                    "untouched, choose another output")


def mark(folder: Path, command: str, listing: bool = True, **details: Any) -> None:
    """Leave `command`'s marker in `folder` (what `claim` recognises later). With `listing`
    it lists the files written there so far, and a later `staged_into` of the same folder
    removes those it does not write again, and only those: call it last."""
    folder = Path(folder)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file()) if listing else []
    write_json(folder / OUTPUT_MARKER, {"command": command, **details, "files": files})


def _marked_files(folder: Path) -> list[str]:
    """The files an earlier write listed in its marker (never a path leaving `folder`)."""
    listed = _marker(folder).get("files", [])
    listed = listed if isinstance(listed, list) else []
    return [f for f in listed if isinstance(f, str) and ".." not in Path(f).parts]


@contextlib.contextmanager
def staged_into(target: Path, last: str | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success move each file written there into
    `target` (same relative path, replacing only those files; `last` moved last, as the marker
    that says the set is whole). Files an earlier write listed in its marker (`mark`) and this
    one does not write again are removed; every other file of `target` stays as it is."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(target)
    try:
        with _users_paths_in_errors(tmp, target):
            tmp.mkdir()
            yield tmp
            earlier = _marked_files(target)
            files = sorted((p for p in tmp.rglob("*") if p.is_file()),
                           key=lambda p: (p.relative_to(tmp).as_posix() == last, str(p)))
            written = {p.relative_to(tmp).as_posix() for p in files}
            target.mkdir(exist_ok=True)
            for path in files:
                dest = target / path.relative_to(tmp)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
            for stale in set(earlier) - written:
                (target / stale).unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(target)
    try:
        with _users_paths_in_errors(tmp, target):
            yield tmp
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _users_paths_in_errors(tmp: Path, target: Path) -> Iterator[None]:
    """Re-raise a staged write's OSError naming the user's path instead of the hidden staging
    name (a read-only folder said `.name.<hex>.tmp: Read-only file system`)."""
    try:
        yield
    except OSError as err:
        name = str(err.filename or "")
        if not name or not name.startswith(str(tmp)):
            raise
        raise OSError(err.errno, err.strerror, str(target) + name[len(str(tmp)):]) from err


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def _lock_file(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


@contextlib.contextmanager
def exclusive(target: Path) -> Iterator[None]:
    """Hold a lock on `target` (the hidden file `.NAME.lock` beside it, which survives an
    --overwrite of the folder) for the block, or refuse at once when another process holds it:
    two trainings of one run would interleave their checkpoints and logs. The system releases
    the lock when its process ends, even on kill -9."""
    target = Path(target)
    if fcntl is None:
        yield
        return
    path = _lock_file(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise ClccError(f"{target}: another process (pid {holder}) is training this run; "
                            f"wait for it to end or choose another output") from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            if not target.exists():  # nothing was made (a failed start): no lock left behind
                path.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_locked(target: Path) -> bool:
    """Whether another process holds `exclusive(target)` now."""
    try:
        with exclusive(target):
            return False
    except ClccError:
        return True
