"""Every raw layout `clcc data prepare` reads, by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clcc.data import sources
from clcc.data.acdc import acdc
from clcc.data.la import la
from clcc.data.nnunet import nnunet
from clcc.data.sources import Layout
from clcc.errors import ClccError

LAYOUTS: dict[str, Callable[[Path], Layout]] = {
    "kvasir-seg": lambda root: Layout(sources.kvasir_seg(root)),
    "isic2018": lambda root: Layout(sources.isic2018(root)),
    "folder": lambda root: Layout(sources.folder(root)),
    "acdc": acdc,
    "nnunet": nnunet,
    "la": la,
}


def read_layout(kind: str, root: Path) -> Layout:
    if kind not in LAYOUTS:
        raise ClccError(f"unknown data source {kind!r}; choose one of {', '.join(LAYOUTS)}")
    if not Path(root).is_dir():
        raise ClccError(f"{root}: source folder not found")
    return LAYOUTS[kind](Path(root))
