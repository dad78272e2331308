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
