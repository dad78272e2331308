import json
import os
import subprocess
import sys

import numpy as np
import pytest

from clcc.config import dump_config
from clcc.data.loaders import TrainBatches
from clcc.engine.logging import read_log


def _indices(batches: TrainBatches, epoch: int, key: str) -> list[int]:
    images = batches.images
    seen = []
    for batch in batches.epoch(epoch):
        for sample in batch[key].numpy():
            seen.append(int(np.flatnonzero((images == sample).all(axis=(1, 2, 3)))[0]))
    return seen


def test_ranks_share_an_epoch_without_overlap():
    images = np.arange(20 * 2 * 2 * 3, dtype=np.uint8).reshape(20, 2, 2, 3) * 0
    images[:, 0, 0, 0] = np.arange(20)  # every image distinguishable
    masks = np.zeros((20, 2, 2), np.uint8)
    labelled, unlabelled = np.arange(8), np.arange(8, 20)
    ranks = [TrainBatches(images, masks, labelled, unlabelled, 2, 2, seed=0, rank=r, world=2)
             for r in (0, 1)]
    assert [len(b) for b in ranks] == [2, 2]
    for epoch in (0, 1):
        seen = _indices(ranks[0], epoch, "image") + _indices(ranks[1], epoch, "image")
        assert sorted(seen) == list(range(8))  # each labelled sample once per epoch
        unl = _indices(ranks[0], epoch, "image_u") + _indices(ranks[1], epoch, "image_u")
        assert len(set(unl)) == len(unl) == 8 and set(unl) <= set(range(8, 20))
    single = TrainBatches(images, masks, labelled, unlabelled, 2, 2, seed=0)
    assert sorted(_indices(single, 0, "image")) == list(range(8))



@pytest.mark.parametrize("labelled,drop_last,sizes", [(5, False, [2, 2, 1]), (5, True, [2, 2]),
                                                      (1, True, [1])])
def test_an_epoch_drops_its_short_labelled_batch_when_asked(labelled, drop_last, sizes):
    """As SSL4MIS's TwoStreamBatchSampler and UniMatch's drop_last loaders (68 slices in
    batches of 6: 11 steps, not 12); a set smaller than one batch still gives one step."""
    images = np.zeros((10, 2, 2, 1), np.uint8)
    batches = TrainBatches(images, images[..., 0], np.arange(labelled), np.arange(5, 10), 2, 2,
                           seed=0, drop_last=drop_last)
    assert [len(b["image"]) for b in batches.epoch(0)] == sizes
    assert all(len(b["image_u"]) == 2 for b in batches.epoch(0))


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tiny_config, tmp_path):
    cfg = tiny_config("method.name=mean-teacher", "train.epochs=2", "train.name=ddp")
    path = tmp_path / "ddp.yaml"
    path.write_text(dump_config(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_port=29517", "-m", "clcc", "train", "--config", str(path)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((cfg.run_dir() / "results.json").read_text())
    assert results["world_size"] == 2 and results["ranks_in_sync"] is True
    assert [r["epoch"] for r in read_log(cfg.run_dir() / "metrics.jsonl")] == [1, 2]
    assert proc.stdout.count("best epoch") == 1  # one set of outputs: rank 0 reports
