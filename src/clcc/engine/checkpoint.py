"""Checkpoints: everything needed to resume exactly, written atomically, loaded with
`weights_only=True` (no pickled code runs when a checkpoint is opened)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import torch

from clcc.errors import ClccError
from clcc.files import atomic_path, remove_leftovers


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `path` whole or not at all (the previous checkpoint stays until the new one is
    complete); what a killed write left beside it goes first (the run folder is locked, so no
    other writer's). A full disk reads as one (torch's writer says "N requested and M
    written")."""
    path = Path(path)
    remove_leftovers(path)
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except RuntimeError as err:
        if "requested and" in str(err) and "written" in str(err):
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from err
        raise


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ClccError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        text = str(err)
        if "unsupported global" in text.lower():  # a pickled object would have been built by code
            raise ClccError(
                f"{path}: not a clcc checkpoint; refused, because loading it would run code "
                "(it holds Python objects, not only tensors)"
            ) from err
        # torch's own text suggests the unsafe way round (weights_only=False): never show it
        reason = next((line.strip() for line in text.splitlines() if "Unsupported" in line),
                      type(err).__name__)
        raise ClccError(f"{path}: not a readable clcc checkpoint ({reason})") from err


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
