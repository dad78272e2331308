"""Volumes end to end: NIfTI, nnU-Net and ACDC layouts in, splits by patient, per-volume
metrics against medpy, label volumes out with the input's affine and header."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from clcc.cli import main
from clcc.config import load_config
from clcc.data.prepare import PreparedData, prepare
from clcc.data.volumes import read_volume, to_grey, to_label_map, volume_bytes
from clcc.engine.evaluate import evaluate_prepared, resize_labels
from clcc.engine.runtime import make_runtime
from clcc.errors import ClccError
from clcc.labels import LabelSpace
from clcc.metrics import volume_metrics

from conftest import TINY
from helpers import AFFINE, write_nifti, write_nnunet, write_ssl4mis_acdc, write_volume_case

ACDC = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "acdc"


# --- reading and writing NIfTI ---------------------------------------------------------------

def test_nifti_reads_as_slices_first_with_spacing_in_that_order(tmp_path):
    data = np.arange(24 * 20 * 4, dtype=np.float32).reshape(24, 20, 4)  # (X, Y, Z)
    write_nifti(tmp_path / "v.nii.gz", data)
    volume = read_volume(tmp_path / "v.nii.gz")
    assert volume.voxels.shape == (4, 24, 20)
    assert np.array_equal(volume.voxels[2], data[:, :, 2])
    assert volume.spacing == (6.0, 1.5, 1.25)


def test_label_volume_keeps_the_inputs_affine_header_and_layout(tmp_path):
    import nibabel as nib

    write_nifti(tmp_path / "img.nii.gz", np.random.default_rng(0).random((24, 20, 4),
                                                                         np.float32) * 900)
    labels = np.zeros((4, 24, 20), np.uint8)
    labels[1, 3:7, 5:9] = 2
    (tmp_path / "out.nii.gz").write_bytes(volume_bytes(labels, tmp_path / "img.nii.gz"))
    out = nib.load(str(tmp_path / "out.nii.gz"))
    assert np.allclose(out.affine, AFFINE) and out.header.get_zooms() == (1.5, 1.25, 6.0)
    assert out.get_data_dtype() == np.uint8
    stored = np.asarray(out.dataobj)
    assert stored.shape == (24, 20, 4) and stored[3:7, 5:9, 1].min() == 2 and stored.sum() == 32
    assert np.array_equal(read_volume(tmp_path / "out.nii.gz").voxels, labels)


def test_intensities_are_clipped_at_percentiles_then_scaled():
    voxels = np.concatenate([np.linspace(0, 100, 999), [1e6]]).astype(np.float32)
    grey = to_grey(voxels, Path("v.nii.gz"))
    assert grey.min() == 0 and grey.max() == 255
    assert abs(int(grey[500]) - 128) <= 1  # the outlier did not squeeze the rest to black


def test_label_volume_values_are_checked():
    with pytest.raises(ClccError, match="outside the declared classes 0…1.*--classes"):
        to_label_map(np.array([0, 1, 3]), Path("m.nii.gz"), 2)
    with pytest.raises(ClccError, match="whole class values"):
        to_label_map(np.array([0, 0.5]), Path("m.nii.gz"), 2)
    assert to_label_map(np.array([0, 255]), Path("m.nii.gz"), 2).tolist() == [0, 1]


# --- the layouts -----------------------------------------------------------------------------

def test_nnunet_layout_prepares_volumes_as_slices_with_their_label_volumes(tmp_path):
    write_nnunet(tmp_path / "raw", cases=6)
    summary = prepare("nnunet", tmp_path / "raw", tmp_path / "p", fractions=(0.6, 0.2, 0.2),
                      labelled=2, selections=(0,), size=16)
    assert (summary["train"], summary["val"], summary["test"]) == (4, 1, 1)
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["labels"] == {"background": 0, "a": 1, "b": 2}
    assert manifest["channels"] == 1 and manifest["volumetric"]
    data = PreparedData.open(tmp_path / "p", 16)
    assert data.images.shape == (24, 16, 16, 1) and data.volumes  # 6 volumes of 4 slices
    assert len(data.split("val")) == 4 and len(data.labelled(0)) == 8
    name = data.subset("test")[0]
    truth = np.moveaxis(np.asarray(__import__("nibabel").load(
        str(tmp_path / "raw" / "labelsTr" / f"{name}.nii.gz")).dataobj), 2, 0)
    assert np.array_equal(data.native(name), truth) and data.spacing(name) == (6.0, 1.5, 1.25)


def test_nnunet_png_layout_is_grey_and_two_dimensional(tmp_path):
    from PIL import Image

    root = tmp_path / "raw"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "grey"}, "labels": {"background": 0, "road": 1},
        "file_ending": ".png", "numTraining": 5}))
    for i in range(5):
        Image.fromarray(np.full((20, 24), 40 * i, np.uint8)).save(
            root / "imagesTr" / f"c{i}_0000.png")
        Image.fromarray(np.eye(20, 24, dtype=np.uint8)).save(root / "labelsTr" / f"c{i}.png")
    prepare("nnunet", root, tmp_path / "p", fractions=(0.6, 0.2, 0.2), labelled=1, size=16)
    data = PreparedData.open(tmp_path / "p", 16)
    assert data.images.shape == (5, 16, 16, 1) and not data.volumes
    assert data.labels == LabelSpace(("road",))


@pytest.mark.parametrize("change, message", [
    ({"channel_names": {"0": "CT", "1": "MRI"}}, "a CT channel among 2 input channels"),
    ({"channel_names": {"0": "T2", "2": "ADC"}}, "should map \"0\", \"1\""),
    ({"labels": {"background": 0, "whole": [1, 2]}}, "region-based"),
    ({"labels": {"background": 0, "a": 1, "ignore": 2}}, "label 'ignore' (value 2) is nnU-Net"),
])
def test_nnunet_refuses_what_clcc_cannot_train(tmp_path, capsys, change, message):
    write_nnunet(tmp_path / "raw", cases=3, **change)
    code = main(["data", "prepare", "nnunet", "--source", str(tmp_path / "raw"),
                 "--output", str(tmp_path / "p"), "--size", "16"])
    err = capsys.readouterr().err
    assert code == 2 and "dataset.json" in err and message in err
    assert not (tmp_path / "p").exists()


def test_folder_of_nifti_volumes_with_classes(tmp_path):
    for i in range(5):
        write_volume_case(tmp_path / "raw" / "images" / f"v{i}.nii.gz",
                          tmp_path / "raw" / "masks" / f"v{i}.nii.gz", seed=i)
    prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=1, size=16, classes=("a", "b"))
    data = PreparedData.open(tmp_path / "p", 16)
    assert data.volumes and data.channels == 1 and len(data.names) == 5
    assert set(np.unique(data.masks)) == {0, 1, 2}


def test_ssl4mis_acdc_layout_keeps_its_split_order_and_patients_together(tmp_path):
    volumes = write_ssl4mis_acdc(tmp_path / "acdc")
    summary = prepare("acdc", tmp_path / "acdc", tmp_path / "p", labelled=1,
                      selections=(0, 1, 2), size=16)
    assert (summary["train_groups"], summary["val_groups"], summary["test_groups"]) == (4, 1, 1)
    assert summary["train_slices"] == 32 and summary["val"] == 2
    splits = tmp_path / "p" / "splits"
    # selection 0 is the first patient of train_slices.list (003), as SSL4MIS's "1 case"
    assert (splits / "labelled-0.txt").read_text().split() == [
        "patient003_frame01", "patient003_frame02"]
    for k in (1, 2):  # other selections: whole patients too
        chosen = (splits / f"labelled-{k}.txt").read_text().split()
        assert len(chosen) == 2 and len({n.split("_")[0] for n in chosen}) == 1
    data = PreparedData.open(tmp_path / "p", 16)
    assert np.array_equal(data.native("patient005_frame01"), volumes["patient005_frame01"])
    assert len(data.labelled(0)) == 8 and len(data.unlabelled(0)) == 24


def test_a_patient_split_over_two_lists_is_refused(tmp_path, capsys):
    write_ssl4mis_acdc(tmp_path / "acdc")
    prepare("acdc", tmp_path / "acdc", tmp_path / "p", labelled=1, size=16)
    train = tmp_path / "p" / "splits" / "train.txt"
    val = tmp_path / "p" / "splits" / "val.txt"
    names = train.read_text().split()
    moved = next(n for n in names if n.startswith("patient001_frame02"))
    train.write_text("".join(f"{n}\n" for n in names if n != moved))
    val.write_text(val.read_text() + f"{moved}\n")
    with pytest.raises(ClccError, match="of one group 'patient001'"):
        PreparedData.open(tmp_path / "p", 16)


def test_official_acdc_release_is_split_as_ssl4mis_splits_it(tmp_path):
    root = tmp_path / "acdc" / "database" / "training"
    for number in (28, 11, 99, 38):  # val, test, then SSL4MIS's first two training patients
        folder = root / f"patient{number:03d}"
        for frame in (1, 12):
            write_volume_case(folder / f"patient{number:03d}_frame{frame:02d}.nii.gz",
                              folder / f"patient{number:03d}_frame{frame:02d}_gt.nii.gz",
                              seed=number + frame)
        write_nifti(folder / f"patient{number:03d}_4d.nii.gz", np.zeros((4, 4, 2, 3)))
        (folder / "Info.cfg").write_text("ED: 1\nES: 12\n")
    prepare("acdc", tmp_path / "acdc", tmp_path / "p", labelled=1, size=16)
    lists = {s: (tmp_path / "p" / "splits" / f"{s}.txt").read_text().split()
             for s in ("train", "val", "test", "labelled-0")}
    assert lists["val"] == ["patient028_frame01", "patient028_frame12"]
    assert lists["test"] == ["patient011_frame01", "patient011_frame12"]
    assert lists["labelled-0"] == ["patient099_frame01", "patient099_frame12"]
    assert len(lists["train"]) == 4
    (root / "patient099" / "patient099_frame12_gt.nii.gz").unlink()
    with pytest.raises(ClccError, match=r"patient099/Info.cfg: names patient099_frame12, but "
                                        r"patient099_frame12_gt.nii.gz is missing"):
        prepare("acdc", tmp_path / "acdc", tmp_path / "p2", labelled=1, size=16)


@pytest.fixture(scope="session")
def acdc_dir() -> Path:
    if not (ACDC / "train_slices.list").is_file():
        pytest.skip(f"SSL4MIS's ACDC not found at {ACDC.resolve()}")
    return ACDC


@pytest.mark.parametrize("patients, slices", [(3, 68), (7, 136)])
def test_real_acdc_as_ssl4mis_prepares_it(acdc_dir, tmp_path, capsys, patients, slices):
    code = main(["data", "prepare", "acdc", "--source", str(acdc_dir), "--output",
                 str(tmp_path / "p"), "--labelled", str(patients), "--size", "16"])
    out = capsys.readouterr().out
    assert code == 0
    assert ("train 70 patients (140 volumes, 1312 slices) / val 10 patients (20 volumes, "
            "210 slices) / test 20 patients (40 volumes, 380 slices)") in out
    data = PreparedData.open(tmp_path / "p", 16)
    first = (acdc_dir / "train_slices.list").read_text().split()[:slices]
    assert sorted(data.names[i] for i in {_case_of(data, r) for r in data.labelled(0)}) == \
        sorted({s.split("_slice_")[0] for s in first})
    assert len(data.labelled(0)) == slices


def _case_of(data: PreparedData, row: int) -> int:
    return next(i for i, rows in enumerate(data.rows) if row in rows)


# --- metrics of a volume ---------------------------------------------------------------------

def test_volume_metrics_agree_with_medpy():
    medpy = pytest.importorskip("medpy.metric.binary")
    from scipy import ndimage

    rng = np.random.default_rng(0)
    spacing = (6.0, 1.5, 1.25)
    for _ in range(4):
        a = ndimage.binary_dilation(rng.random((8, 40, 36)) > 0.996, iterations=3)
        b = ndimage.binary_dilation(rng.random((8, 40, 36)) > 0.996, iterations=3)
        row = volume_metrics(a, b, spacing=spacing)
        assert row["dice"] == pytest.approx(medpy.dc(a, b))
        assert row["iou"] == pytest.approx(medpy.jc(a, b))
        assert row["hd95"] == pytest.approx(medpy.hd95(a, b))
        assert row["asd"] == pytest.approx(medpy.asd(a, b))
        assert row["hd95_mm"] == pytest.approx(medpy.hd95(a, b, spacing))
        assert row["asd_mm"] == pytest.approx(medpy.asd(a, b, spacing))


def test_volume_metrics_by_hand():
    truth = np.zeros((3, 10, 10), bool)
    truth[1, 2:6, 2:6] = True  # a 4×4 square on the middle slice
    shifted = np.roll(truth, 2, axis=2)  # 2 voxels along the last axis
    row = volume_metrics(shifted, truth, spacing=(5.0, 1.0, 0.5))
    assert row["dice"] == pytest.approx(2 * 8 / 32) and row["iou"] == pytest.approx(8 / 24)
    # one slice thick, every voxel is surface (its neighbours across slices are empty): per
    # row the shifted square's columns 4, 5, 6, 7 lie 0, 0, 1, 2 voxels from the truth's 2–5
    assert row["asd"] == pytest.approx(0.75) and row["asd_mm"] == pytest.approx(0.375)
    assert row["hd95"] == 2 and row["hd95_mm"] == 1  # 95th percentile of 16×0, 8×1, 8×2
    missed = volume_metrics(np.zeros_like(truth), truth)
    assert missed["dice"] == 0 and missed["hd95"] == pytest.approx(np.sqrt(9 + 100 + 100))
    assert volume_metrics(np.zeros_like(truth), np.zeros_like(truth))["hd95"] == 0


class LabelsFromIntensity(nn.Module):
    """A stand-in network whose class is read off the grey value (0, 1/3, 2/3 …)."""

    labels = LabelSpace(("a", "b"))
    in_channels = 1

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        classes = torch.arange(3, dtype=x.dtype).view(1, 3, 1, 1)
        return SimpleNamespace(logits=-100 * (x * 3 - classes) ** 2)


def test_labels_resize_back_with_nearest_neighbour():
    labels = np.zeros((2, 4, 6), np.uint8)
    labels[:, :2, 3:] = 2
    back = resize_labels(resize_labels(labels, 2, 2), 4, 6)
    assert back.shape == (2, 4, 6) and set(np.unique(back)) == {0, 2}


def test_each_volume_is_scored_whole_from_its_own_slices(tmp_path):
    """A stand-in that reads each slice right scores Dice 1 and HD95 0 on every volume: the
    slices of a volume are gathered in order and compared with its label volume."""
    write_ssl4mis_acdc(tmp_path / "acdc")
    prepare("acdc", tmp_path / "acdc", tmp_path / "p", labelled=1, size=24)
    data = PreparedData.open(tmp_path / "p", 24)
    rows, summary = evaluate_prepared(LabelsFromIntensity(), data, data.subset("test"),
                                      make_runtime("cpu", "fp32"))
    assert [r["case"] for r in rows] == ["patient006_frame01", "patient006_frame02"]
    assert summary["dice"]["mean"] == pytest.approx(1) and summary["hd95"]["mean"] == 0
    assert {"dice_a", "asd_b", "iou_b"} <= set(rows[0])
    shuffled = dict(data.__dict__, rows=[r[::-1] for r in data.rows])  # slices reversed
    rows, _ = evaluate_prepared(LabelsFromIntensity(), PreparedData(**shuffled),
                                data.subset("test"), make_runtime("cpu", "fp32"))
    assert rows[0]["dice"] < 1


# --- training and prediction -----------------------------------------------------------------

@pytest.fixture(scope="session")
def volume_run(tmp_path_factory) -> Path:
    """A tiny run on a NIfTI nnU-Net set, counted in iterations, with SGD and poly."""
    from clcc.engine.trainer import train

    root = tmp_path_factory.mktemp("volumes")
    write_nnunet(root / "raw", cases=6)
    prepare("nnunet", root / "raw", root / "p", fractions=(0.6, 0.2, 0.2), labelled=2,
            selections=(0,), size=16)
    cfg = load_config(None, [*TINY, "data.size=16", f"data.root={root / 'p'}",
                             f"train.output={root / 'runs'}", "train.iterations=5",
                             "train.eval_every=5", "optim.name=sgd", "optim.lr=0.01",
                             "optim.schedule=poly", "train.flips=ssl4mis"])
    train(cfg)
    return cfg.run_dir()


def test_a_run_counted_in_iterations_stops_there_and_scores_volumes(volume_run):
    results = json.loads((volume_run / "results.json").read_text())
    assert results["steps"] == 5 and results["epochs"] == 2  # 8 labelled slices / batch 2
    records = [json.loads(line) for line in (volume_run / "metrics.jsonl").read_text()
               .splitlines()]
    assert [r["step"] for r in records] == [4, 5]  # the second epoch cut short
    assert [("val/dice" in r) for r in records] == [False, True]  # every 5 steps, and at the end
    assert records[-1]["lr"] == 0  # poly decays to 0 at the last step
    assert set(results["test"]) >= {"dice", "iou", "hd95", "asd", "hd95_mm", "asd_mm"}
    csv = (volume_run / "test_per_image.csv").read_text().splitlines()
    assert len(csv) == 2 and csv[0].startswith("case,dice,iou,hd95")  # one row per volume


def test_predict_writes_label_volumes_on_the_input_grid(volume_run, tmp_path, capsys):
    import nibabel as nib

    write_volume_case(tmp_path / "in" / "new.nii.gz", None, seed=9)
    code = main(["predict", "--checkpoint", str(volume_run / "best.pt"), "--input",
                 str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--probabilities",
                 "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    out = nib.load(str(tmp_path / "out" / "new.nii.gz"))
    assert out.shape == (24, 20, 4) and np.allclose(out.affine, AFFINE)
    assert out.get_data_dtype() == np.uint8 and set(np.unique(out.dataobj)) <= {0, 1, 2}
    probs = [nib.load(str(tmp_path / "out" / "probabilities" / f"new_{c}.nii.gz"))
             for c in ("background", "a", "b")]
    total = sum(np.asarray(p.dataobj) for p in probs)
    assert np.allclose(total, 1, atol=1e-4) and np.allclose(probs[1].affine, AFFINE)


def test_evaluate_on_a_folder_of_volumes_points_to_prepare(checkpoint, tmp_path, capsys):
    write_volume_case(tmp_path / "images" / "v.nii.gz", tmp_path / "masks" / "v.nii.gz")
    code = main(["evaluate", "--checkpoint", str(checkpoint), "--images",
                 str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
                 "--device", "cpu"])
    assert code == 2 and "v.nii.gz: a volume" in capsys.readouterr().err


def test_grey_jitter_changes_brightness_and_contrast_only():
    from clcc.data.strong import colour_jitter

    grey = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    out = colour_jitter(grey, p=1.0)
    assert out.shape == grey.shape and not torch.equal(out, grey)
    torch.manual_seed(1)  # the same draws on the grey image replicated as RGB
    rgb = colour_jitter(grey.expand(-1, 3, -1, -1), p=1.0)
    assert torch.allclose(rgb[:, :1], out) and torch.allclose(rgb[:, 0], rgb[:, 2], atol=1e-5)


def test_volume_tables_report_jaccard_and_distances_in_voxels():
    from clcc.report.tables import markdown_table, summarise_runs

    def result(selection: int, dice: float) -> dict:
        metric = {"dice": dice, "iou": dice - 0.1, "hd95": 3.0 + selection, "asd": 1.0}
        return {"variant": "supervised", "label": "supervised", "selection": selection,
                "val": {"dice": {"mean": dice}},
                "test": {k: {"mean": v, "std": 0.0} for k, v in metric.items()}}

    rows = summarise_runs([result(0, 0.8), result(1, 0.6)])
    assert rows[0]["dice"]["mean"] == pytest.approx(70) and rows[0]["hd95"]["mean"] == 3.5
    table = markdown_table(rows)
    assert "| Dice | Jaccard | HD95 (voxels) | ASD (voxels) |" in table and "MAE" not in table
    assert "| 70.00 ± 14.14 | 60.00 ± 14.14 | 3.50 ± 0.71 | 1.00 ± 0.00 |" in table


def test_the_la_table_reads_each_run_and_intervals_each_method_by_hand(tmp_path, capsys,
                                                                      monkeypatch):
    """benchmarks/volume_table.py makes the LA quick table of docs/results.md: each run's best
    step from its validations, its precision (recorded, else its config's choice), best and
    last test Dice, and per method a Student-t interval that says when it mixes seeds."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "volume_table.py"
    spec = importlib.util.spec_from_file_location("volume_table", path)
    volume_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(volume_table)

    def run(name: str, method: str, selection: int, seed: int, best: float, last: float) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        metric = {"dice": best, "iou": best / 2, "hd95": 40.0, "asd": 20.0, "dice_lcc": best}
        results = {"method": method, "selection": selection, "seed": seed, "best_epoch": 2,
                   "test": {k: {"mean": v, "std": 0.1} for k, v in metric.items()},
                   "test_last": {"dice": {"mean": last}, "dice_lcc": {"mean": last}}}
        if selection == 1:
            results["precision"] = "fp32"
        (folder / "config.yaml").write_text("train:\n  precision: auto\n")
        (folder / "results.json").write_text(json.dumps(results))
        (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in (
            {"epoch": 1, "step": 4}, {"epoch": 2, "step": 8, "val_step": 8})))
        return folder

    runs = [run("a", "supervised", 0, 0, 0.30, 0.20), run("b", "supervised", 1, 0, 0.40, 0.40),
            run("c", "uamt", 0, 0, 0.41, 0.37), run("d", "bcp", 0, 0, 0.50, 0.50),
            run("e", "bcp", 0, 1, 0.30, 0.30)]
    (tmp_path / "f").mkdir()  # trained, not scored
    monkeypatch.setattr("sys.argv", ["volume_table.py", *map(str, runs), str(tmp_path / "f")])
    volume_table.main()
    out = capsys.readouterr().out
    assert ("| supervised | 1 | 0 | fp32 | 8 | 40.00 ± 10.00 | 20.00 | 40.00 | 20.00 | 40.00 | "
            "40.00 | 40.00 |") in out
    assert "| supervised | 0 | 0 | auto | 8 | 30.00 ± 10.00 |" in out
    assert "| f: not scored yet |" in out
    # mean 35, sd 7.071, t(0.975, 1) = 12.706: 35 ± 12.706 · 7.071 / √2 = 35 ± 63.53
    assert "supervised, best on validation: 35.00 over 2 selections, 95 % t-interval " \
           "[-28.53, 98.53]" in out
    assert "supervised, last weights: 30.00 over 2 selections" in out
    assert "uamt, best on validation: 41.00, one run (no interval)" in out
    assert "bcp, best on validation: 40.00 over 2 runs (selections and seeds)" in out


def test_a_grey_model_exports_with_one_input_channel(volume_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from clcc.engine.evaluate import predict_probabilities
    from clcc.engine.export import OnnxModel, export_onnx
    from clcc.engine.predict import load_trained_model

    cfg, model, runtime = load_trained_model(volume_run / "best.pt", "cpu")
    export_onnx(model, cfg.data.size, tmp_path / "m.onnx", volume_run / "best.pt")
    onnx = OnnxModel(tmp_path / "m.onnx")
    assert onnx.channels == 1 and onnx.labels == model.labels
    slices = np.random.default_rng(0).integers(0, 255, (2, 16, 16, 1), dtype=np.uint8)
    expected = predict_probabilities(model, slices, runtime)
    assert torch.allclose(onnx.probabilities(slices), expected, atol=1e-4)


def test_an_rgb_model_predicts_a_volume_from_its_grey_slices(checkpoint, tmp_path, capsys):
    """Grey slices go into an RGB model as grey files do (repeated into R, G, B)."""
    import nibabel as nib

    write_volume_case(tmp_path / "in" / "scan.nii.gz", None)
    code = main(["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "out"), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    out = nib.load(str(tmp_path / "out" / "scan.nii.gz"))
    assert out.shape == (24, 20, 4) and set(np.unique(out.dataobj)) <= {0, 1}


def test_a_volume_set_prepared_without_a_cache_counts_no_slices(tmp_path, capsys):
    write_ssl4mis_acdc(tmp_path / "acdc")
    code = main(["data", "prepare", "acdc", "--source", str(tmp_path / "acdc"), "--output",
                 str(tmp_path / "p"), "--labelled", "1", "--size", "0"])
    out = capsys.readouterr().out
    assert code == 0 and "labelled 1 patients (2 volumes)," in out and "slices" not in out


def test_a_label_volume_on_a_flipped_affine_is_refused_naming_it(tmp_path, capsys):
    """nnU-Net's integrity check refuses it; trained voxel for voxel it is a mirrored label."""
    import nibabel as nib

    write_nnunet(tmp_path / "raw", cases=6)
    label = tmp_path / "raw" / "labelsTr" / "case01.nii.gz"
    img = nib.load(str(label))
    flipped = img.affine @ np.diag([-1.0, 1, 1, 1])
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), flipped), str(label))
    assert main(["data", "prepare", "nnunet", "--source", str(tmp_path / "raw"), "--output",
                 str(tmp_path / "p"), "--size", "16", "--labelled", "1"]) == 2
    err = capsys.readouterr().err
    assert "case01.nii.gz: its affine (orientation, origin or spacing) differs from " in err
    assert not (tmp_path / "p").exists()


def test_nearest_resampling_zooms_slices_as_ssl4mis_does(tmp_path):
    """`data.resample: nearest` (the ACDC configs): a cache of its own whose images are the
    nearest-neighbour zoom of the slice, as SSL4MIS's `zoom(order=0)`; the bilinear cache keeps
    its folder and digest, so caches made before the choice stay valid."""
    from clcc.data.decode import resize_image
    from clcc.data.prepare import _cases, _fingerprint, _manifest

    image = np.array([[0, 100], [200, 255]], np.uint8)[..., None]
    assert resize_image(image, 4, "nearest")[..., 0].tolist() == [
        [0, 0, 100, 100], [0, 0, 100, 100], [200, 200, 255, 255], [200, 200, 255, 255]]
    assert len(np.unique(resize_image(image, 4, "bilinear"))) > 4  # blends
    write_ssl4mis_acdc(tmp_path / "acdc")
    prepare("acdc", tmp_path / "acdc", tmp_path / "p", labelled=1, size=16)
    cases = _cases(_manifest(tmp_path / "p"))
    assert _fingerprint(cases, 16) == _fingerprint(cases, 16, "bilinear")
    assert _fingerprint(cases, 16, "nearest") != _fingerprint(cases, 16)
    bilinear = PreparedData.open(tmp_path / "p", 16)
    nearest = PreparedData.open(tmp_path / "p", 16, "nearest")
    assert (tmp_path / "p" / "cache" / "16-nearest" / "images.npy").is_file()
    assert np.array_equal(bilinear.masks, nearest.masks)  # masks are nearest either way
    assert not np.array_equal(bilinear.images, nearest.images)


def test_predict_resizes_new_images_as_the_model_was_trained():
    import torch

    from clcc.engine.predict import Predictor
    from clcc.labels import BINARY

    seen = []

    def backend(images):
        seen.append(images)
        return torch.zeros(len(images), 1, 4, 4)

    image = np.array([[0, 100], [200, 255]], np.uint8)[..., None]
    Predictor(backend, 4, BINARY, channels=1, resample="nearest").probabilities(image)
    assert seen[0][0, ..., 0].tolist()[0] == [0, 0, 100, 100]


def test_a_volume_too_large_for_memory_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import clcc.data.volumes as volumes

    write_nifti(tmp_path / "big.nii.gz", np.zeros((40, 30, 20), np.float32))
    monkeypatch.setattr(volumes, "available_memory", lambda: 10_000)
    with pytest.raises(ClccError, match=r"big.nii.gz: a volume of 40×30×20 voxels needs "
                                        r"0\.0 GiB to read, 0\.0 GiB is available"):
        volumes.read_volume(tmp_path / "big.nii.gz")


def test_grey_conversion_in_chunks_equals_the_whole_volume_at_once(monkeypatch):
    """Chunked conversion gives the voxels a whole-volume conversion gave; a volume larger
    than the percentile sample is clipped at percentiles of an even stride through it."""
    import clcc.data.volumes as volumes

    rng = np.random.default_rng(0)
    voxels = np.moveaxis(rng.normal(100, 30, (20, 18, 40)).astype(np.float32), 2, 0)
    data = np.asarray(voxels, np.float32)
    low, high = np.percentile(data, volumes.CLIP_PERCENTILES)
    whole = np.round(np.clip((np.clip(data, low, high) - low) / (high - low), 0, 1) * 255)
    assert np.array_equal(volumes.to_grey(voxels, Path("v")), whole.astype(np.uint8))
    monkeypatch.setattr(volumes, "PERCENTILE_SAMPLE", 1000)  # 14 400 voxels: a stride of 14
    sample = voxels.ravel(order="K")[::14]
    low, high = np.percentile(sample, volumes.CLIP_PERCENTILES)
    strided = np.round(np.clip((np.clip(data, low, high) - low) / (high - low), 0, 1) * 255)
    assert np.array_equal(volumes.to_grey(voxels, Path("v")), strided.astype(np.uint8))
