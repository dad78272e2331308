"""Several classes end to end: the label space by hand, label-map masks, per-class metrics,
every method on a 4-class synthetic set, label maps out of `predict` and ONNX."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from clcc.cli import main
from clcc.config import load_config
from clcc.data.prepare import PreparedData, prepare
from clcc.data.synthetic import write_synthetic
from clcc.errors import ClccError
from clcc.labels import BINARY, LabelSpace
from clcc.methods import METHODS, build_method
from clcc.metrics import class_metrics

from conftest import TINY
from test_methods import PARAMS, SIZE, WIDTHS

HEART = LabelSpace(("rv", "myo", "lv"))


def test_the_label_space_by_hand():
    assert (HEART.classes, HEART.heads, BINARY.heads) == (4, 4, 1)
    assert HEART.as_dict() == {"background": 0, "rv": 1, "myo": 2, "lv": 3}
    assert LabelSpace.from_dict(HEART.as_dict()) == HEART and LabelSpace.from_dict(None) == BINARY
    logits = torch.tensor([0.0, 2.0, 1.0, -1.0]).view(1, 4, 1, 1)
    probs = HEART.probabilities(logits)
    e = [math.exp(v) for v in (0.0, 2.0, 1.0, -1.0)]
    assert probs.flatten().tolist() == pytest.approx([v / sum(e) for v in e])
    assert HEART.hard(probs).item() == 1 and HEART.confidence(probs).item() == pytest.approx(
        e[1] / sum(e))
    uniform = torch.full((1, 4, 1, 1), 0.25)
    assert HEART.entropy(uniform).item() == pytest.approx(math.log(4)) == HEART.max_entropy
    assert HEART.one_hot(torch.tensor([[[[2.0]]]])).flatten().tolist() == [0, 0, 1, 0]
    p = torch.tensor([0.2, 0.7]).view(1, 1, 1, 2)
    assert BINARY.hard(p).flatten().tolist() == [0, 1]
    assert BINARY.distribution(p)[:, 0].flatten().tolist() == pytest.approx([0.8, 0.3])


def test_a_binary_threshold_cuts_probabilities_and_logits_alike():
    """p > 0.75 is logit > ln 3 (1.0986); a multi-class space has no threshold."""
    strict = dataclasses.replace(BINARY, threshold=0.75)
    assert strict.hard(torch.tensor([0.2, 0.7, 0.8]).view(1, 1, 1, 3)).flatten().tolist() == [
        0, 0, 1]
    assert strict.segment(torch.tensor([1.0, 1.2]).view(1, 1, 1, 2)).flatten().tolist() == [0, 1]
    assert BINARY.segment(torch.tensor([-0.1, 0.1]).view(1, 1, 1, 2)).flatten().tolist() == [0, 1]
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="give a probability between 0 and 1"):
            dataclasses.replace(BINARY, threshold=bad)
    with pytest.raises(ValueError, match="a model of 4 classes takes the most probable class"):
        dataclasses.replace(HEART, threshold=0.7)


def test_multiclass_dice_over_classes_by_hand():
    """Two pixels, classes 0 and 2 of 3 predicted with certainty, the second one wrong."""
    space = LabelSpace(("a", "b"))
    probs = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]).view(1, 3, 1, 2)  # 0, 2
    truth = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    # class 0: p = (1, 0), t = (1, 0) → 0; class 1: p = 0, t = (0, 1) → 1; class 2: p = (0, 1),
    # t = 0 → 1: mean 2/3
    loss = space.masked_dice_loss(probs, truth, torch.ones_like(truth))
    assert loss.item() == pytest.approx(2 / 3, abs=1e-4)
    keep_first = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)  # the wrong pixel ignored
    assert space.masked_dice_loss(probs, truth, keep_first).item() == pytest.approx(0, abs=1e-4)


def test_per_class_metrics_by_hand():
    truth = np.array([[1, 1, 0], [2, 2, 0], [3, 0, 0]])
    pred = np.array([[1, 0, 0], [2, 2, 2], [0, 0, 0]])
    row = class_metrics(pred, truth, HEART, with_hd95=False)
    # rv: |P|=1, |G|=2, TP=1 → 2/3; myo: |P|=3, |G|=2, TP=2 → 4/5; lv: missed → 0
    assert row["dice_rv"] == pytest.approx(2 / 3) and row["dice_myo"] == pytest.approx(0.8)
    assert row["dice_lv"] == 0.0 and row["dice"] == pytest.approx((2 / 3 + 0.8) / 3)
    assert row["iou_myo"] == pytest.approx(2 / 3) and row["recall_rv"] == pytest.approx(0.5)
    binary = class_metrics(pred > 0, truth > 0, BINARY, with_hd95=False)
    assert set(binary) == {"dice", "iou", "mae", "precision", "recall"}  # columns as before


@pytest.fixture(scope="module")
def heart_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("heart")
    write_synthetic(root / "raw", count=24, size=48, classes=4)
    prepare("folder", root / "raw", root / "prepared", labelled=6, selections=(0,), size=32,
            classes=("rv", "myo", "lv"))
    return root / "prepared"


def test_label_maps_are_prepared_by_value(heart_set):
    data = PreparedData.open(heart_set, 32)
    assert data.labels == HEART
    assert set(np.unique(np.asarray(data.masks))) == {0, 1, 2, 3}


def test_a_value_outside_the_declared_classes_is_refused_naming_the_file(tmp_path):
    write_synthetic(tmp_path / "raw", count=12, size=32, classes=4)
    with pytest.raises(ClccError, match=r"synth_\d{4}.png: label values \[3\] outside the "
                       r"declared classes 0…2 \(--classes\)"):
        prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=2, size=16,
                classes=("rv", "myo"))
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "raw" / "masks" /
                                                          "synth_0000.png")
    with pytest.raises(ClccError, match=r"synth_0000.png: a label map must have one channel"):
        prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=2, size=16,
                classes=("rv", "myo", "lv"))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_one_step_of_every_method_with_four_classes(name):
    torch.manual_seed(0)
    widths = WIDTHS
    method = build_method(name, SIZE, PARAMS.get(name), widths=widths, labels=HEART)
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(2, 3, SIZE, SIZE, generator=g),
             "mask": torch.randint(0, 4, (2, 1, SIZE, SIZE), generator=g).float(),
             "image_u": torch.randn(2, 3, SIZE, SIZE, generator=g)}
    loss, logs = method.training_step(batch, 0.9)
    assert math.isfinite(loss.item()) and all(torch.isfinite(v).all() for v in logs.values())
    loss.backward()
    assert method.model.head.weight.shape[0] == 4 and method.model.head.weight.grad is not None


@pytest.mark.parametrize("loss", ["authors", "vnet"])
def test_the_binary_losses_are_refused_for_several_classes(loss):
    with pytest.raises(ClccError, match=rf"loss.supervised={loss} is a binary loss; a 4-class"):
        build_method("supervised", SIZE, None, loss, widths=WIDTHS, labels=HEART)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_on_four_classes_with_per_class_results(heart_set, tmp_path, name):
    from clcc.engine.trainer import train

    sets = [*TINY, f"data.root={heart_set}", f"train.output={tmp_path}", f"method.name={name}",
            "train.epochs=1"]
    if name == "urpc":
        sets.append("model.widths=[4,8,16,32,64]")
    if name in PARAMS:
        sets.append(f"method.params={json.dumps(PARAMS[name]).replace('4', '2')}")
    results = train(load_config(None, sets))
    test = results["test"]
    assert {"dice_rv", "dice_myo", "dice_lv", "hd95_lv"} <= set(test)
    assert test["dice"]["mean"] == pytest.approx(np.mean([test[f"dice_{c}"]["mean"]
                                                          for c in HEART.names]), abs=1e-9)
    header = (tmp_path / f"{name}-sel0-seed0" / "test_per_image.csv").read_text().split("\n")[0]
    assert header.startswith("case,dice,iou,mae,precision,recall,hd95,dice_rv,")


def test_predict_and_onnx_write_label_maps(heart_set, tmp_path, capsys):
    from clcc.engine.trainer import train

    cfg = load_config(None, [*TINY, f"data.root={heart_set}", f"train.output={tmp_path}",
                             "train.epochs=1"])
    train(cfg)
    checkpoint = cfg.run_dir() / "best.pt"
    image = (np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(image).save(tmp_path / "in" / "a.png")
    assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "out"), "--probabilities", "--overlay",
                 "--device", "cpu"]) == 0
    label_map = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    assert label_map.shape == (40, 30) and set(np.unique(label_map)) <= {0, 1, 2, 3}
    assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "cut"), "--threshold", "0.6"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        f"{checkpoint}: a model of 4 classes takes the most probable class; --threshold is "
        "for a binary model")
    assert not (tmp_path / "cut").exists()
    assert sorted(p.name for p in (tmp_path / "out" / "probabilities").iterdir()) == [
        "a_background.png", "a_lv.png", "a_myo.png", "a_rv.png"]
    pytest.importorskip("onnxruntime")
    assert main(["export", "--checkpoint", str(checkpoint), "--output",
                 str(tmp_path / "m.onnx")]) == 0
    assert "probabilities of 4 classes N×4×H×W" in capsys.readouterr().out
    assert main(["predict", "--onnx", str(tmp_path / "m.onnx"), "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "onnx-out")]) == 0
    onnx_map = np.asarray(Image.open(tmp_path / "onnx-out" / "a.png"))
    assert np.mean(onnx_map == label_map) > 0.99  # same model, another runtime


@pytest.mark.slow
def test_a_multiclass_grid_tables_and_reports_each_class(heart_set, tmp_path):
    from clcc.experiment import run_grid

    sets = [*TINY, f"data.root={heart_set}", "train.epochs=1"]
    run_grid(None, sets, ["supervised", "mean-teacher"], [0], tmp_path / "grid", poll_s=0.2)
    table = (tmp_path / "grid" / "table.md").read_text()
    assert "| Dice per class |" in table and "rv " in table and " / lv " in table
    page = (tmp_path / "grid" / "report" / "index.html").read_text()
    assert "Dice per class" in page and "&#9632;</span> myo" in page


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_takes_grey_slices_and_an_epochs_short_last_batch(name):
    """ACDC's shape of a step: one grey channel, four classes, and (at the end of an epoch of
    68 labelled slices in batches of 6) 2 labelled images beside 6 unlabelled ones."""
    torch.manual_seed(0)
    method = build_method(name, SIZE, PARAMS.get(name), widths=WIDTHS, labels=HEART,
                          in_channels=1)
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(2, 1, SIZE, SIZE, generator=g),
             "mask": torch.randint(0, 4, (2, 1, SIZE, SIZE), generator=g).float(),
             "image_u": torch.randn(6, 1, SIZE, SIZE, generator=g)}
    loss, _ = method.training_step(batch, 0.9)
    assert math.isfinite(loss.item())
    loss.backward()
    assert method.model.encoder[0][0].weight.shape[1] == 1
