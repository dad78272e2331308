"""The real Kvasir-SEG (../shared/data/kvasir-seg), when present: prepare it, and train a few
steps of every registered method on it."""

from pathlib import Path

import pytest

from clcc.config import load_config
from clcc.data.prepare import prepare
from clcc.engine.trainer import Trainer
from clcc.methods import METHODS

PARAMS = {"clcc": "{n: 2}"}


@pytest.fixture(scope="module")
def kvasir_prepared(tmp_path_factory: pytest.TempPathFactory, kvasir_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("kvasir")
    summary = prepare("kvasir-seg", kvasir_dir, root / "prepared", labelled=120, size=64)
    assert summary == {"train": 600, "val": 200, "test": 200, "labelled": 120, "unlabelled": 480}
    lst = root / "prepared" / "splits" / "labelled-0.txt"
    lst.write_text("".join(lst.read_text().splitlines(keepends=True)[:12]))  # 3 steps of 4 + 4
    return root / "prepared"


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_few_steps_of_every_method_on_real_kvasir(kvasir_prepared, tmp_path, method):
    cfg = load_config(None, [
        f"data.root={kvasir_prepared}", "data.size=64", f"method.name={method}",
        f"method.params={PARAMS.get(method, '{}')}", "train.epochs=1", "train.progress=false",
        f"train.output={tmp_path / 'runs'}",
    ])
    trainer = Trainer(cfg)
    results = trainer.fit()
    assert trainer.step == 3
    assert 0 <= results["test"]["dice"]["mean"] <= 1 and results["selection"] == 0
