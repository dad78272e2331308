"""Atomic file writes: a reader never sees a half-written output, even after a crash; and
run locks: two processes never write one run folder.

Temporary names are not made with `mkstemp`/`mkdtemp`: those create mode 0600/0700, which the
rename would carry onto every checkpoint, table and report, unreadable to anyone else on a shared
server. The writer creates the temporary file itself, so the user's umask applies.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clcc.errors import ClccError

try:
    import fcntl
except ImportError:  # Windows has no flock: runs are not guarded there
    fcntl = None  # type: ignore[assignment]


def _temporary_name(target: Path) -> Path:
    """A fresh hidden name beside `target` (same file system, so the final rename is atomic)."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; swap it in for `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(target)
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            old = _temporary_name(target).with_suffix(".old")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_locked(target: Path) -> bool:
    """Whether another process holds `exclusive(target)` now."""
    try:
        with exclusive(target):
            return False
    except ClccError:
        return True
