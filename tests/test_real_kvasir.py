"""The real Kvasir-SEG (../shared/data/kvasir-seg), when present: prepare it, train a few steps."""

import pytest

from clcc.config import load_config
from clcc.data.prepare import prepare
from clcc.engine.trainer import Trainer


@pytest.mark.slow
def test_prepare_and_train_a_few_steps_on_real_kvasir(kvasir_dir, tmp_path):
    summary = prepare("kvasir-seg", kvasir_dir, tmp_path / "kvasir", labelled=120, size=64)
    assert summary == {"train": 600, "val": 200, "test": 200, "labelled": 120, "unlabelled": 480}
    cfg = load_config(None, [
        f"data.root={tmp_path / 'kvasir'}", "data.size=64", "method.name=clcc",
        "method.params={n: 2}", "train.epochs=1", "train.progress=false",
        f"train.output={tmp_path / 'runs'}",
    ])
    lst = tmp_path / "kvasir" / "splits" / "labelled-0.txt"
    lst.write_text("".join(lst.read_text().splitlines(keepends=True)[:12]))  # 3 steps of 4 + 4
    trainer = Trainer(cfg)
    results = trainer.fit()
    assert 0 <= results["test"]["dice"]["mean"] <= 1
    assert trainer.step == 3
