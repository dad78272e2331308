"""What a run folder is, and the policy for writing one: `clcc train` and `clcc experiment`
replace a run only when it is one (its `config.yaml` beside a checkpoint or a log), and then
only the files a run writes; a folder that is not a run is never written into."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import yaml

from clcc.errors import ClccError
from clcc.files import claim

RUN_FILES = ("config.yaml", "metrics.jsonl", "last.pt", "best.pt", "results.json",
             "val_per_image.csv", "test_per_image.csv", "test_last_per_image.csv", "train.log")
RUN_FOLDERS = ("tensorboard",)
EVIDENCE = ("last.pt", "best.pt", "metrics.jsonl", "results.json")


def is_run(folder: Path) -> bool:
    """A clcc config in `config.yaml` beside a checkpoint, a metrics log or results."""
    folder = Path(folder)
    try:
        saved = yaml.safe_load((folder / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return False
    return (isinstance(saved, dict) and {"method", "train"} <= set(saved)
            and any((folder / name).exists() for name in EVIDENCE))


def clear_run(folder: Path) -> None:
    """Remove the files a run writes (and only those) from the run `folder`."""
    folder = Path(folder)
    if not is_run(folder):
        raise ClccError(f"{folder}: not a run folder (no config.yaml beside a checkpoint); "
                        "it is left untouched")
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        shutil.rmtree(folder / name, ignore_errors=True)


def _ours(folder: Path) -> bool:
    """A run, or a folder holding only the log `clcc experiment` opens before a run starts."""
    return is_run(folder) or [p.name for p in Path(folder).iterdir()] == ["train.log"]


def claim_run_dir(run_dir: Path, inputs: Iterable[Path], resume: bool, overwrite: bool) -> None:
    """Refuse a run folder that is not a run or lies apart from none of `inputs` (the
    prepared data), and a finished or started run unless resumed or overwritten; with
    `overwrite`, clear the run's own files."""
    claim(run_dir, "train", inputs=inputs, ours=_ours)
    if not is_run(run_dir):
        return
    if (Path(run_dir) / "last.pt").exists() and not resume and not overwrite:
        raise ClccError(f"{run_dir}: a run exists; pass --resume to continue it or --overwrite")
    if overwrite:
        clear_run(run_dir)
