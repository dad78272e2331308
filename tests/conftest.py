"""Shared fixtures: a tiny prepared synthetic data set and a fast training config."""

from __future__ import annotations

from pathlib import Path

import pytest

from clcc.config import Config, load_config
from clcc.data.prepare import prepare
from clcc.data.synthetic import write_synthetic

TINY = [
    "data.size=32",
    "model.widths=[4,8,16]",
    "train.epochs=2",
    "train.eval_every=1",
    "train.labelled_batch=2",
    "train.unlabelled_batch=2",
    "train.progress=false",
    "train.threads=1",
    "train.precision=fp32",  # the same numbers on every CI CPU, with or without native bf16
]


@pytest.fixture(scope="session")
def synth_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_synthetic(root / "raw", count=40, size=48)
    prepare("folder", root / "raw", root / "prepared", labelled=8, selections=(0, 1), size=32)
    return root / "prepared"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, synth_prepared: Path) -> Path:
    """best.pt of a tiny supervised run, shared by the prediction and export tests."""
    from clcc.engine.trainer import train

    out = tmp_path_factory.mktemp("run")
    cfg = load_config(None, [*TINY, f"data.root={synth_prepared}", f"train.output={out}"])
    train(cfg)
    return cfg.run_dir() / "best.pt"


@pytest.fixture
def tiny_config(synth_prepared: Path, tmp_path: Path):
    def make(*overrides: str) -> Config:
        return load_config(
            None, [*TINY, f"data.root={synth_prepared}", f"train.output={tmp_path / 'runs'}",
                   *overrides]
        )

    return make


KVASIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kvasir-seg"


@pytest.fixture(scope="session")
def kvasir_dir() -> Path:
    if not (KVASIR / "images").is_dir():
        pytest.skip(f"real Kvasir-SEG not found at {KVASIR.resolve()}")
    return KVASIR
