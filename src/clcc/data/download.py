"""Official archives for users with internet: fetch, verify, and extract safely.

Verification is on the *content*: a SHA-256 over the sorted (relative path, file SHA-256) pairs
of the extracted image and mask files. Unlike a hash of the zip itself, it does not change when
a mirror re-packs the archive, and it was computed here from a copy of the official release.
Extraction refuses members that would land outside the target folder (zip-slip), absolute paths
and links.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import stat
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from clcc.errors import ClccError
from clcc.files import OUTPUT_MARKER, atomic_path, claim, mark, staged_into


@dataclass(frozen=True)
class Archive:
    url: str
    top: str  # the folder inside the archive that holds images/ and masks/
    content_sha256: str
    content_dirs: tuple[str, ...] = ("images", "masks")


ARCHIVES = {
    "kvasir-seg": Archive(
        url="https://datasets.simula.no/downloads/kvasir-seg.zip",
        top="Kvasir-SEG",
        content_sha256="2a024f362ebc560429a25b5093b34a7aef0aaecf0d2783081a9c3e00b09db1db",
    ),
}


def content_digest(root: Path, dirs: tuple[str, ...] = ("images", "masks")) -> str:
    """SHA-256 over the sorted (relative path, SHA-256) pairs of the files in `dirs`."""
    root = Path(root)
    total = hashlib.sha256()
    for sub in dirs:
        for path in sorted((root / sub).rglob("*")):
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                total.update(f"{path.relative_to(root).as_posix()}\0{digest}\n".encode())
    return total.hexdigest()


def safe_extract(archive: Path, target: Path, shown: Path | None = None) -> None:
    """Extract a zip, refusing any member that is a link or would escape `target`; messages
    name `shown` (the user's folder) when `target` is a temporary one beside it."""
    target = Path(target).resolve()
    where = Path(shown) if shown is not None else target
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = PurePosixPath(info.filename.replace("\\", "/"))
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ClccError(f"{archive}: member {info.filename!r} is a link; refusing")
            dest = (target / name).resolve()
            if name.is_absolute() or not dest.is_relative_to(target):
                raise ClccError(
                    f"{archive}: member {info.filename!r} would be written outside {where}"
                )
        zf.extractall(target)


def fetch(url: str, dest: Path) -> Path:
    """Download `url` to `dest` through a temporary file; a failure is one line naming both."""
    try:
        with atomic_path(dest) as tmp, urllib.request.urlopen(url, timeout=60) as response:
            with open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise ClccError(f"{url}: download failed ({reason}); nothing was written") from err
    return dest


def download(name: str, output: Path, url: str | None = None) -> Path:
    """Fetch data set `name` into `output`, verify its content digest, return the data folder.

    `url` overrides the official address (a mirror, or a local `file://` archive). `output` is a
    new or empty folder, or one this command wrote before (other files in it stay). The archive
    goes to a hidden temporary name beside `output` and is removed whatever happens; a failed
    call leaves no folder it made.
    """
    if name not in ARCHIVES:
        raise ClccError(f"no download for {name!r}; available: {', '.join(ARCHIVES)}")
    spec = ARCHIVES[name]
    output = Path(output).absolute()
    local = Path(urllib.request.url2pathname(urlparse(url).path)) if url and url.startswith(
        "file:") else None
    claim(output, "data download", inputs=[local])
    created = _missing_folders(output.parent)
    output.parent.mkdir(parents=True, exist_ok=True)
    zip_path = output.with_name(f".{output.name}.download.zip")
    try:
        fetch(url or spec.url, zip_path)
        with staged_into(output, last=OUTPUT_MARKER) as tmp:
            _check_zip(zip_path, url or spec.url)
            safe_extract(zip_path, tmp, shown=output)
            digest = content_digest(tmp / spec.top, spec.content_dirs)
            if digest != spec.content_sha256:
                raise ClccError(
                    f"{url or spec.url}: content checksum mismatch (got {digest}, expected "
                    f"{spec.content_sha256}); the download is corrupt or not the official "
                    "release"
                )
            mark(tmp, "data download", name=name, content_sha256=digest)
    except BaseException:
        zip_path.unlink(missing_ok=True)
        for folder in created:  # deepest first: only the folders this call made, if empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        zip_path.unlink(missing_ok=True)
    return output / spec.top


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _check_zip(path: Path, url: str) -> None:
    if not zipfile.is_zipfile(path):
        raise ClccError(f"{url}: not a zip archive; nothing was written")
