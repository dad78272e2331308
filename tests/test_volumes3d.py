"""Volumes trained as volumes: UA-MT's LA layout, whole-volume caches, random patches, a 3-D
U-Net and the V-Net trained on them and scored per volume by sliding window."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from clcc.config import load_config
from clcc.data.prepare import prepare
from clcc.data.volume_data import PatchBatches, VolumeData, random_crop, rot_flip
from clcc.errors import ClccError

from conftest import TINY


def write_la(root: Path, train: int = 14, test: int = 3) -> list[str]:
    """UA-MT's `data/` in miniature: (x, y, z) volumes whose bright blob is the atrium."""
    rng = np.random.default_rng(0)
    names = [f"CASE{i:02d}" for i in range(train + test)]
    for i, name in enumerate(names):
        x, y, z = 20 + i % 3, 24, 18
        label = np.zeros((x, y, z), np.uint8)
        label[5:14, 6:16, 4:12] = 1
        image = (label * 2.0 + rng.normal(0, 0.3, label.shape)).astype(np.float32)
        folder = root / "2018LA_Seg_Training Set" / name
        folder.mkdir(parents=True)
        with h5py.File(folder / "mri_norm2.h5", "w") as f:
            f["image"], f["label"] = image, label
    (root / "train.list").write_text("\n".join(names[:train]) + "\n")
    (root / "test.list").write_text("\n".join(names[train:]) + "\n")
    return names


@pytest.fixture(scope="module")
def la_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("la")
    write_la(root / "data")
    prepare("la", root / "data", root / "prepared", labelled=2, size=None)
    return root / "prepared"


def test_la_is_split_as_the_literature_with_a_validation_hold_out(la_set):
    lists = {n: (la_set / "splits" / f"{n}.txt").read_text().split()
             for n in ("train", "val", "test", "labelled-0")}
    assert (len(lists["train"]), len(lists["val"]), len(lists["test"])) == (4, 10, 3)
    assert lists["labelled-0"] == ["CASE00", "CASE01"]  # the first N of train.list
    assert lists["val"] == [f"CASE{i:02d}" for i in range(4, 14)]  # its last 10


def test_whole_volumes_are_kept_as_stored_with_the_slice_axis_first(la_set):
    data = VolumeData.open_volumes(la_set)
    i = data.names.index("CASE01")
    with h5py.File(Path(json.loads((la_set / "manifest.json").read_text())["cases"][1]["image"]
                        ), "r") as f:
        stored = f["image"][:]
    assert data.images[i].shape == (18, 21, 24)  # (z, x, y)
    assert np.array_equal(data.images[i], np.moveaxis(stored, 2, 0))
    assert data.masks[i].dtype == np.uint8 and data.masks[i].sum() == 9 * 10 * 8
    assert data.labelled(0).tolist() == [data.names.index("CASE00"), i]


def test_rot_flip_and_crop_by_hand():
    rng = np.random.default_rng(0)
    volume = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    turned = rot_flip([volume, volume], rng)
    assert np.array_equal(turned[0], turned[1])  # image and label alike
    assert sorted(turned[0].ravel().tolist()) == list(range(24))
    small = np.ones((4, 6, 8))
    (crop,) = random_crop([small], (8, 8, 8), rng)  # padded (by 5, 4, 3 a side) then cut
    assert crop.shape == (8, 8, 8) and 0 < crop.sum() < 8**3
    big = np.arange(10 * 10 * 10).reshape(10, 10, 10)
    (crop,) = random_crop([big], (4, 4, 4), rng)
    start = np.argwhere(big == crop[0, 0, 0])[0]
    assert np.array_equal(crop, big[start[0]:start[0] + 4, start[1]:start[1] + 4,
                                    start[2]:start[2] + 4])


def test_patch_batches_mix_labelled_and_unlabelled_volumes(la_set):
    data = VolumeData.open_volumes(la_set)
    batches = PatchBatches(data, data.labelled(0), data.unlabelled(0), (16, 16, 16), 2, 2, 0)
    (batch,) = list(batches.epoch(0))
    assert batch["image"].shape == batch["image_u"].shape == (2, 1, 16, 16, 16)
    assert batch["mask"].shape == (2, 16, 16, 16) and batch["mask"].dtype == torch.uint8
    again = next(iter(batches.epoch(0)))
    assert torch.equal(again["image"], batch["image"])  # an epoch replays exactly


@pytest.mark.slow
@pytest.mark.parametrize("model", [
    ["model.name=vnet", "model.widths=[2,4,8,16,32]", "data.patch=[16,16,16]"],
    ["model.name=ssl4mis", "model.widths=[4,8,16]", "data.patch=[16,16,16]"],
    ["model.name=unet3d-dv", "model.widths=[2,4,8,16,32]", "data.patch=[32,32,32]"],
])  # (InstanceNorm needs a bottleneck of more than one voxel)
def test_a_3d_network_trains_on_patches_and_is_scored_per_volume(la_set, tmp_path, model):
    from clcc.engine.predict import load_trained_model
    from clcc.engine.trainer import train

    cfg = load_config(None, [*TINY, *model, "model.spatial_dims=3",
                             f"data.root={la_set}", f"train.output={tmp_path}",
                             "train.iterations=2", "train.eval_every=2",
                             "data.window_overlap=[0.5,0.25,0.25]"])
    results = train(cfg)
    assert results["steps"] == 2 and "dice_lcc" in results["test"]  # its own column
    rows = (cfg.run_dir() / "test_per_image.csv").read_text().splitlines()
    assert rows[0].startswith("case,dice,iou") and len(rows) == 1 + 3  # the 3 test volumes
    _, net, _ = load_trained_model(cfg.run_dir() / "best.pt", "cpu")
    assert net.spatial_dims == 3
    # clcc evaluate scores the same volumes by sliding window
    from clcc.cli import main

    assert main(["evaluate", "--checkpoint", str(cfg.run_dir() / "best.pt"), "--output",
                 str(tmp_path / "ev")]) == 0
    scored = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert scored["dice"]["mean"] == pytest.approx(results["test"]["dice"]["mean"])
    # clcc predict: a NIfTI volume in, its label volume out on the input's grid
    import nibabel as nib

    affine = np.diag([0.625, 0.625, 2.5, 1.0])
    scan = np.random.default_rng(1).normal(0, 1, (21, 24, 18)).astype(np.float32)
    (tmp_path / "scans").mkdir()
    nib.save(nib.Nifti1Image(scan, affine), str(tmp_path / "scans" / "new.nii.gz"))
    assert main(["predict", "--checkpoint", str(cfg.run_dir() / "best.pt"), "--input",
                 str(tmp_path / "scans"), "--output", str(tmp_path / "labels"),
                 "--probabilities"]) == 0
    written = nib.load(str(tmp_path / "labels" / "new.nii.gz"))
    assert written.shape == scan.shape and np.allclose(written.affine, affine)
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1}
    assert nib.load(str(tmp_path / "labels" / "probabilities" / "new.nii.gz")).shape == (
        scan.shape)
    # ONNX: a 3-D model exports, runs in onnxruntime and predicts the same label volume
    pytest.importorskip("onnxruntime")
    assert main(["export", "--checkpoint", str(cfg.run_dir() / "best.pt"), "--output",
                 str(tmp_path / "m.onnx")]) == 0
    assert main(["predict", "--onnx", str(tmp_path / "m.onnx"), "--input",
                 str(tmp_path / "scans"), "--output", str(tmp_path / "labels-onnx")]) == 0
    by_onnx = np.asarray(nib.load(str(tmp_path / "labels-onnx" / "new.nii.gz")).dataobj)
    by_torch = np.asarray(written.dataobj)
    assert by_onnx.shape == scan.shape and (by_onnx == by_torch).mean() > 0.999


def test_a_3d_network_needs_a_patch():
    with pytest.raises(ClccError, match="data.patch must give 3 sides"):
        load_config(None, ["model.name=vnet", "model.spatial_dims=3"])
    with pytest.raises(ClccError, match="vnet is a 3-D network"):
        load_config(None, ["model.name=vnet"])


UAMT_DATA = Path(__file__).resolve().parents[2] / "authors" / "UA-MT" / "data"


def test_real_la_prepares_as_every_la_paper(tmp_path, capsys):
    """UA-MT's own data/ (a checkout beside the project; skipped without one): 80 + 20
    volumes, the first 8 of train.list labelled, its last 10 held out for validation."""
    source = Path(os.environ.get("UAMT_DATA", UAMT_DATA))
    if not (source / "train.list").is_file():
        pytest.skip(f"UA-MT's LA data not found at {source}")
    from clcc.cli import main

    assert main(["data", "prepare", "la", "--source", str(source), "--output",
                 str(tmp_path / "la"), "--labelled", "8", "--size", "0"]) == 0
    assert "train 70 / val 10 / test 20; labelled 8, unlabelled 62" in capsys.readouterr().out
    first = (source / "train.list").read_text().split()[:8]
    assert (tmp_path / "la" / "splits" / "labelled-0.txt").read_text().split() == sorted(first)


def test_every_method_trains_on_3d_patches():
    """Every registered method takes volumes as it takes images: one step on a 5-D batch, a
    finite loss, gradients that reach the first convolution (BCP with its LA script's losses
    too, in both stages)."""
    from clcc.methods import METHODS, build_method

    batch = {"image": torch.randn(2, 1, 16, 16, 16), "image_u": torch.randn(2, 1, 16, 16, 16),
             "mask": (torch.rand(2, 1, 16, 16, 16) > 0.5).float()}
    runs = [(name, {"n": 2} if name == "clcc" else None) for name in sorted(METHODS)]
    for name, params in [*runs, ("bcp", {"losses": "la"}), ("bcp", {"losses": "la",
                                                                     "pretrain": 0.6})]:
        widths = (4, 8, 16, 32, 64) if name == "urpc" else (4, 8, 16)
        args = {"widths": widths, "in_channels": 1, "spatial_dims": 3}
        torch.manual_seed(0)
        method = build_method(name, (16, 16, 16), params, **args)
        loss, _ = method.training_step(batch, 0.5)
        loss.backward()
        first = next(m for m in method.model.modules() if isinstance(m, torch.nn.Conv3d))
        assert torch.isfinite(loss) and first.weight.grad.abs().sum() > 0, name


@pytest.mark.parametrize("architecture", ["vnet", "unet3d-dv"])
def test_every_method_trains_on_the_3d_networks_of_the_authors(architecture):
    """UA-MT's V-Net and SSL4MIS's 3-D URPC network: one step of every method (URPC needs
    auxiliary heads, which the V-Net has not: refused by name); UniMatch perturbs their
    encoder features as a U-Net's (it once stopped on the V-Net with an AttributeError)."""
    from clcc.errors import ClccError
    from clcc.methods import METHODS, build_method

    side = (32, 64, 64)  # five levels, CLCC's halves too: InstanceNorm needs a bottleneck > 1
    batch = {"image": torch.randn(2, 1, *side), "image_u": torch.randn(4, 1, *side),
             "mask": (torch.rand(2, 1, *side) > 0.5).float()}
    for name in sorted(METHODS):
        args = {"widths": (4, 8, 16, 32, 64), "in_channels": 1, "spatial_dims": 3,
                "architecture": architecture}
        if name == "urpc" and architecture == "vnet":
            with pytest.raises(ClccError, match="the V-Net has no PyramidUNet.*set "
                                                "model.name=unet3d-dv"):
                build_method(name, side, None, **args)
            continue
        torch.manual_seed(0)
        method = build_method(name, side, {"n": 2} if name == "clcc" else None, **args)
        loss, _ = method.training_step(batch, 0.5)
        loss.backward()
        first = next(m for m in method.model.modules() if isinstance(m, torch.nn.Conv3d))
        assert torch.isfinite(loss) and first.weight.grad.abs().sum() > 0, name
    if architecture == "unet3d-dv":  # URPC's four heads: the finest and three coarser
        assert len(build_method("urpc", side, None, **args).model(
            batch["image"]).aux) == 3


@pytest.mark.slow
def test_an_nnunet_raw_set_trains_as_volumes_with_its_spacing(tmp_path):
    """nnU-Net's raw layout, prepared once, trains a 3-D network on whole NIfTI volumes
    (z-scored each), scored per volume in voxels and in mm from the header's spacing."""
    from clcc.engine.trainer import train

    from helpers import write_nnunet

    write_nnunet(tmp_path / "raw", cases=6)
    prepare("nnunet", tmp_path / "raw", tmp_path / "p", labelled=2, size=None)
    data = VolumeData.open_volumes(tmp_path / "p")
    volume = np.asarray(data.images[0])
    assert abs(volume.mean()) < 1e-4 and abs(volume.std() - 1) < 1e-3  # z-scored
    assert data.spacing(data.names[0]) is not None
    cfg = load_config(None, [*TINY, "model.name=ssl4mis", "model.widths=[4,8,16]",
                             "model.spatial_dims=3", "data.patch=[8,16,16]",
                             f"data.root={tmp_path / 'p'}", f"train.output={tmp_path}",
                             "train.iterations=2", "train.eval_every=2"])
    results = train(cfg)
    assert {"dice_a", "dice_b", "hd95_mm"} <= set(results["test"])


def test_largest_components_by_hand_26_connected_in_3d():
    from clcc.metrics import keep_largest_components

    volume = np.zeros((3, 4, 4), np.uint8)
    volume[0, 0, 0] = volume[1, 1, 1] = volume[2, 2, 2] = 1  # diagonal: one 26-connected blob
    volume[0, 3, 3] = 1  # apart
    volume[2, 0, 3] = volume[2, 1, 3] = 2
    kept = keep_largest_components(volume)
    assert kept[0, 3, 3] == 0 and kept[1, 1, 1] == 1 and (kept == 2).sum() == 2


def test_foreground_oversampling_centres_the_last_patches_on_foreground():
    """nnU-Net's oversampling (`data.foreground`): a patch asked to hold foreground does,
    even where the foreground is a single voxel in a corner; a uniform crop mostly misses it."""
    rng = np.random.default_rng(0)
    label = np.zeros((40, 40, 40), np.uint8)
    label[37, 2, 35] = 1
    image = np.zeros_like(label, np.float32)
    hits = [random_crop([image, label], (8, 8, 8), rng, around_foreground=True)[1].sum()
            for _ in range(20)]
    assert all(h == 1 for h in hits)
    uniform = [random_crop([image, label], (8, 8, 8), rng)[1].sum() for _ in range(20)]
    assert sum(uniform) < 20


def test_clcc_3d_cuts_volumes_into_sub_volumes_and_puts_them_back():
    """n×n×n sub-volumes by hand: sub-volume k of image b is the block at (k // n², k // n % n,
    k % n), row-major as the 2-D patches; `from_patches` reassembles the volume exactly."""
    from clcc.geometry import from_patches, to_patches

    x = torch.arange(2 * 1 * 4 * 6 * 8, dtype=torch.float32).reshape(2, 1, 4, 6, 8)
    parts = to_patches(x, 2)
    assert parts.shape == (16, 1, 2, 3, 4)
    for b in range(2):
        for k in range(8):
            i, j, m = k // 4, k // 2 % 2, k % 2
            block = x[b, :, 2 * i:2 * i + 2, 3 * j:3 * j + 3, 4 * m:4 * m + 4]
            assert torch.equal(parts[8 * b + k], block)
    assert torch.equal(from_patches(parts, 2), x)


def test_clcc_3d_pairs_each_sub_volume_vector_with_its_block_of_the_whole():
    """The projection head in 3-D: the full volume's vector at position k sees exactly the
    block that sub-volume k is (eq. 1's positive pair), so changing one block moves one
    vector; one training step of CLCC on volumes runs in either stage."""
    from clcc.methods import build_method
    from clcc.models.heads import ProjectionHead

    head = ProjectionHead(4, (4, 8, 8), dim=16, spatial_dims=3).eval()
    features = torch.randn(1, 4, 8, 16, 16)
    base = head(features)
    assert base.shape == (1, 16, 2, 2, 2)
    changed = features.clone()
    changed[:, :, 4:, :8, 8:] += 1.0  # block (1, 0, 1): position 5
    moved = (head(changed) - base).abs().sum(1)[0].flatten()
    assert moved[5] > 0 and torch.all(moved[torch.arange(8) != 5] == 0)
    torch.manual_seed(0)
    method = build_method("clcc", (16, 16, 16), {"n": 2}, widths=(4, 8, 16), in_channels=1,
                          spatial_dims=3, architecture="ssl4mis")
    batch = {"image": torch.randn(2, 1, 16, 16, 16), "image_u": torch.randn(2, 1, 16, 16, 16),
             "mask": (torch.rand(2, 1, 16, 16, 16) > 0.5).float()}
    for progress in (0.1, 0.9):  # contrast (eq. 1), then consistency (eq. 2)
        loss, logs = method.training_step(batch, progress)
        assert torch.isfinite(loss) and ("contrast" in logs) == (progress < method.stage1)


def test_bcp_pastes_a_cube_in_3d():
    from clcc.geometry import box_mask

    torch.manual_seed(0)
    mask = box_mask((12, 24, 24))
    inside = (mask == 0).nonzero()
    assert int((mask == 0).sum()) == 8 * 16 * 16  # 2/3 of each side
    span = inside.max(0).values - inside.min(0).values + 1
    assert span.tolist() == [8, 16, 16]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["method.name=fixmatch", "method.name=uamt",
                                    "method.name=clcc", "method.name=urpc"])
def test_semi_supervised_methods_train_on_volumes_through_the_engine(la_set, tmp_path, method):
    """The engine's 3-D path with unlabelled patches: FixMatch's second batch, UAMT's teacher,
    CLCC's sub-volumes built for the patch shape (n = 2), URPC on SSL4MIS's 3-D network (its
    best.pt scored and loaded again for prediction as that network)."""
    from clcc.engine.predict import load_trained_model
    from clcc.engine.trainer import train
    from clcc.models.unet3d_dv import DeepSupervisedUNet3D

    network = (["model.name=unet3d-dv", "model.widths=[2,4,8,16,32]", "data.patch=[32,32,32]"]
               if method.endswith("urpc") else
               ["model.name=ssl4mis", "model.widths=[4,8,16]", "data.patch=[16,16,16]"])
    sets = [*TINY, method, *network, "model.spatial_dims=3", f"data.root={la_set}",
            f"train.output={tmp_path}", "train.iterations=2", "train.eval_every=2"]
    if method.endswith("clcc"):
        sets.append("method.params={n: 2}")
    cfg = load_config(None, sets)
    results = train(cfg)
    assert results["steps"] == 2 and 0 <= results["test"]["dice"]["mean"] <= 1
    if method.endswith("urpc"):
        _, model, _ = load_trained_model(cfg.run_dir() / "best.pt", "cpu")
        assert isinstance(model, DeepSupervisedUNet3D) and not model.training


def test_a_ct_set_is_normalised_as_nnunet_normalises_ct(tmp_path):
    """dataset.json names the channel CT: every volume clipped to the 0.5–99.5th percentiles of
    the training volumes' foreground voxels, less their mean, over their std."""
    import nibabel as nib

    from helpers import write_nnunet

    write_nnunet(tmp_path / "raw", cases=6, channel_names={"0": "CT"})
    prepare("nnunet", tmp_path / "raw", tmp_path / "p", labelled=2, size=None)
    data = VolumeData.open_volumes(tmp_path / "p")
    train = (tmp_path / "p" / "splits" / "train.txt").read_text().split()
    fg = []
    for name in train:
        image = nib.load(str(tmp_path / "raw" / "imagesTr" / f"{name}_0000.nii.gz")).get_fdata()
        label = nib.load(str(tmp_path / "raw" / "labelsTr" / f"{name}.nii.gz")).get_fdata()
        fg.append(image[label > 0].astype(np.float32))
    values = np.concatenate(fg)
    low, high = np.percentile(values, (0.5, 99.5))
    name = data.names[0]
    raw = nib.load(str(tmp_path / "raw" / "imagesTr" / f"{name}_0000.nii.gz")).get_fdata()
    expected = (np.clip(np.moveaxis(raw, 2, 0).astype(np.float32), low, high) - values.mean()
                ) / values.std()
    assert np.allclose(data.images[0], expected, atol=1e-4)


@pytest.mark.slow
def test_a_ct_model_predicts_new_volumes_normalised_as_it_trained(tmp_path):
    """The CT statistics travel in the checkpoint (and the ONNX metadata): predict normalises a
    new scan with the training set's, not its own."""
    from clcc.cli import main
    from clcc.engine.checkpoint import load_checkpoint
    from clcc.engine.trainer import train

    from helpers import write_nnunet

    write_nnunet(tmp_path / "raw", cases=6, channel_names={"0": "CT"})
    prepare("nnunet", tmp_path / "raw", tmp_path / "p", labelled=2, size=None)
    cfg = load_config(None, [*TINY, "model.name=ssl4mis", "model.widths=[4,8,16]",
                             "model.spatial_dims=3", "data.patch=[8,16,16]",
                             f"data.root={tmp_path / 'p'}", f"train.output={tmp_path}",
                             "train.iterations=2", "train.eval_every=2"])
    train(cfg)
    ct = load_checkpoint(cfg.run_dir() / "best.pt")["ct"]
    assert ct == pytest.approx(list(VolumeData.open_volumes(tmp_path / "p").ct))
    from clcc.engine.predict import Predictor, load_trained_model

    _, model, runtime = load_trained_model(cfg.run_dir() / "best.pt", "cpu")
    seen = []
    assert model.ct == pytest.approx(tuple(ct))  # carried from the checkpoint
    predictor = Predictor.from_model(model, 16, runtime, window=(8, 16, 16))
    predictor.volume_backend = lambda voxels: seen.append(voxels) or torch.zeros(
        1, *voxels.shape[1:])
    scan = tmp_path / "raw" / "imagesTr" / "case00_0000.nii.gz"
    predictor.volume((scan,))
    import nibabel as nib

    raw = np.moveaxis(nib.load(str(scan)).get_fdata(), 2, 0).astype(np.float32)
    low, high, mean, std = ct
    assert np.allclose(seen[0][0], (np.clip(raw, low, high) - mean) / std, atol=1e-4)
    assert main(["predict", "--checkpoint", str(cfg.run_dir() / "best.pt"), "--input",
                 str(tmp_path / "raw" / "imagesTr"), "--output", str(tmp_path / "out")]) == 0


def _zscore(volume: np.ndarray) -> np.ndarray:
    return (volume - volume.mean()) / volume.std()


def test_several_input_channels_are_read_as_channels_each_normalised(tmp_path):
    """nnU-Net's `_0000`, `_0001` of a case: one (C, D, H, W) volume, each channel z-scored on
    its own, in channel order; the patches keep the channels."""
    import nibabel as nib

    from helpers import write_nnunet

    write_nnunet(tmp_path / "raw", cases=4, channel_names={"0": "T2", "1": "ADC"})
    prepare("nnunet", tmp_path / "raw", tmp_path / "p", labelled=2, size=None)
    data = VolumeData.open_volumes(tmp_path / "p")
    assert data.channels == 2 and data.image(0).shape[0] == 2
    for c in (0, 1):
        raw = nib.load(str(tmp_path / "raw" / "imagesTr" / f"case00_{c:04d}.nii.gz")).get_fdata()
        expected = _zscore(np.moveaxis(raw, 2, 0).astype(np.float32))
        assert np.allclose(data.image(0)[c], expected, atol=1e-4)
    assert data.native_shapes[0] == list(data.image(0).shape[1:])
    batches = PatchBatches(data, data.labelled(0), data.unlabelled(0), (8, 8, 8), 2, 1, 0)
    batch = next(iter(batches.epoch(0)))
    assert batch["image"].shape == (2, 2, 8, 8, 8) and batch["mask"].shape == (2, 8, 8, 8)
    # the channels move together: the second is a fixed function of the first's labels
    assert not torch.equal(batch["image"][:, 0], batch["image"][:, 1])


def test_a_missing_channel_or_a_2d_cache_of_several_channels_is_refused(tmp_path, capsys):
    from clcc.cli import main

    from helpers import write_nnunet

    write_nnunet(tmp_path / "raw", cases=4, channel_names={"0": "T2", "1": "ADC"})
    code = main(["data", "prepare", "nnunet", "--source", str(tmp_path / "raw"),
                 "--output", str(tmp_path / "p2d"), "--size", "16", "--labelled", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "case00_0000.nii.gz: 2 input channels; a 2-D network" in err
    assert "--size 0" in err and not (tmp_path / "p2d").exists()
    (tmp_path / "raw" / "imagesTr" / "case02_0001.nii.gz").unlink()
    code = main(["data", "prepare", "nnunet", "--source", str(tmp_path / "raw"),
                 "--output", str(tmp_path / "p"), "--size", "0", "--labelled", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "case02_0001.nii.gz: not found; every case needs its 2 input" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_model_of_two_channels_trains_and_predicts_cases_of_two_files(tmp_path):
    """Trained on two-channel volumes; `clcc predict` on a folder of `CASE_0000`/`CASE_0001`
    files writes one `CASE.nii.gz` per case, on the input's grid, from both channels."""
    import nibabel as nib

    from clcc.cli import main
    from clcc.engine.trainer import train

    from helpers import write_nnunet

    write_nnunet(tmp_path / "raw", cases=5, channel_names={"0": "T2", "1": "ADC"})
    prepare("nnunet", tmp_path / "raw", tmp_path / "p", labelled=2, size=None)
    cfg = load_config(None, [*TINY, "model.name=ssl4mis", "model.widths=[4,8,16]",
                             "model.spatial_dims=3", "data.patch=[8,16,16]",
                             f"data.root={tmp_path / 'p'}", f"train.output={tmp_path}",
                             "train.iterations=2", "train.eval_every=2",
                             "method.name=mean-teacher"])
    results = train(cfg)
    assert results["steps"] == 2 and 0 <= results["test"]["dice"]["mean"] <= 1
    assert main(["predict", "--checkpoint", str(cfg.run_dir() / "best.pt"), "--input",
                 str(tmp_path / "raw" / "imagesTr"), "--output", str(tmp_path / "out")]) == 0
    written = sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz"))
    assert written == [f"case{i:02d}.nii.gz" for i in range(5)]
    first = nib.load(str(tmp_path / "raw" / "imagesTr" / "case00_0000.nii.gz"))
    out = nib.load(str(tmp_path / "out" / "case00.nii.gz"))
    assert out.shape == first.shape and np.allclose(out.affine, first.affine)
    (tmp_path / "raw" / "imagesTr" / "case01_0001.nii.gz").unlink()
    assert main(["predict", "--checkpoint", str(cfg.run_dir() / "best.pt"), "--input",
                 str(tmp_path / "raw" / "imagesTr"), "--output", str(tmp_path / "out2")]) == 2
    assert not (tmp_path / "out2").exists()


def test_resampled_shapes_and_label_round_trip_by_hand():
    from clcc.data.volume_data import resampled_shape, to_shape

    from helpers import volume_labels

    assert resampled_shape((4, 24, 20), (6.0, 1.5, 1.25), (3.0, 1.5, 1.25)) == (8, 24, 20)
    assert resampled_shape((5, 10, 3), (1.0, 1.0, 1.0), (2.0, 0.5, 4.0)) == (2, 20, 1)
    labels = np.moveaxis(volume_labels(), 2, 0)[None]  # (1, 4, 24, 20)
    up = to_shape(labels, (8, 48, 40), labels=True)
    assert up.dtype == torch.uint8
    assert torch.equal(up[0, ::2, ::2, ::2], torch.from_numpy(labels[0]))
    assert torch.equal(to_shape(up, (4, 24, 20), labels=True), torch.from_numpy(labels))
    flat = torch.full((2, 3, 4, 5), 0.25)
    assert torch.allclose(to_shape(flat, (6, 8, 10)), torch.full((2, 6, 8, 10), 0.25))


def test_volumes_resampled_to_a_target_spacing_train_and_score_on_their_own_grid(tmp_path):
    """`data.spacing`: the cache (a folder of its own) holds volumes on the target grid, the
    labels scores are taken on stay on each volume's; a run trains there, is scored on the
    own grid, and `clcc predict` writes label volumes on the input's grid."""
    import nibabel as nib

    from clcc.cli import main
    from clcc.engine.trainer import train

    from helpers import write_nnunet

    write_nnunet(tmp_path / "raw", cases=5)  # (D, H, W) = (4, 24, 20) at (6, 1.5, 1.25) mm
    prepare("nnunet", tmp_path / "raw", tmp_path / "p", labelled=2, size=None)
    data = VolumeData.open_volumes(tmp_path / "p", spacing=(3.0, 1.5, 1.25))
    assert data.image(0).shape == (1, 8, 24, 20) and data.masks[0].shape == (8, 24, 20)
    raw = nib.load(str(tmp_path / "raw" / "labelsTr" / "case00.nii.gz")).get_fdata()
    assert np.array_equal(data.native("case00"), np.moveaxis(raw, 2, 0))
    assert data.spacing("case00") == pytest.approx((6.0, 1.5, 1.25))
    assert (tmp_path / "p" / "cache" / "volumes-3x1.5x1.25" / "meta.json").exists()
    assert VolumeData.open_volumes(tmp_path / "p").image(0).shape == (1, 4, 24, 20)
    cfg = load_config(None, [*TINY, "model.name=ssl4mis", "model.widths=[4,8,16]",
                             "model.spatial_dims=3", "data.patch=[8,16,16]",
                             "data.spacing=[3.0,1.5,1.25]", f"data.root={tmp_path / 'p'}",
                             f"train.output={tmp_path}", "train.iterations=2",
                             "train.eval_every=2"])
    results = train(cfg)
    assert 0 <= results["test"]["dice"]["mean"] <= 1
    assert main(["predict", "--checkpoint", str(cfg.run_dir() / "best.pt"), "--input",
                 str(tmp_path / "raw" / "imagesTr"), "--output", str(tmp_path / "out")]) == 0
    out = nib.load(str(tmp_path / "out" / "case00_0000.nii.gz"))  # one channel: its name
    assert out.shape == raw.shape and np.allclose(out.affine, nib.load(
        str(tmp_path / "raw" / "imagesTr" / "case00_0000.nii.gz")).affine)
    pytest.importorskip("onnxruntime")  # the spacing travels in the ONNX metadata too
    assert main(["export", "--checkpoint", str(cfg.run_dir() / "best.pt"), "--output",
                 str(tmp_path / "m.onnx")]) == 0
    assert main(["predict", "--onnx", str(tmp_path / "m.onnx"), "--input",
                 str(tmp_path / "raw" / "imagesTr"), "--output", str(tmp_path / "out-onnx")]) == 0
    by_onnx = nib.load(str(tmp_path / "out-onnx" / "case00_0000.nii.gz")).get_fdata()
    assert by_onnx.shape == raw.shape and (by_onnx == out.get_fdata()).mean() > 0.999


def test_a_target_spacing_needs_volumes_that_have_one(la_set):
    with pytest.raises(ClccError, match=r"mri_norm2.h5: no voxel spacing in the file"):
        VolumeData.open_volumes(la_set, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ClccError, match="data.spacing must give 3 positive sides"):
        load_config(None, ["data.spacing=[1.0,1.0,1.0]"])  # a 2-D network
    with pytest.raises(ClccError, match="data.spacing must give 3 positive sides"):
        load_config(None, ["model.spatial_dims=3", "data.patch=[16,16,16]",
                           "data.spacing=[1.0,0.0,1.0]"])


def test_ranks_share_an_epoch_of_patches_without_overlap(tmp_path):
    """Under torchrun each rank takes every other batch of one order: the labelled volumes of
    an epoch are seen once across ranks; one process sees them all."""
    write_la(tmp_path / "data", train=16)
    prepare("la", tmp_path / "data", tmp_path / "p", labelled=4, size=None)
    data = VolumeData.open_volumes(tmp_path / "p")

    def volume_of(patch: torch.Tensor) -> int:  # noisy voxels: one value, one volume
        value = float(patch.flatten()[0])
        (found,) = [i for i in data.labelled(0) if (np.asarray(data.images[i]) == value).any()]
        return int(found)

    def volumes_of(batches: PatchBatches, epoch: int) -> list[int]:
        return [volume_of(p) for batch in batches.epoch(epoch) for p in batch["image"][:, 0]]

    args = (data, data.labelled(0), data.unlabelled(0), (8, 8, 8), 1, 1, 0, False)
    ranks = [PatchBatches(*args, rank=r, world=2) for r in (0, 1)]
    assert [len(r) for r in ranks] == [2, 2]
    for epoch in (0, 1):
        both = volumes_of(ranks[0], epoch) + volumes_of(ranks[1], epoch)
        assert sorted(both) == sorted(data.labelled(0).tolist())
        assert both == volumes_of(PatchBatches(*args), epoch)[::2][:2] + volumes_of(
            PatchBatches(*args), epoch)[1::2][:2]


@pytest.mark.slow
def test_torchrun_trains_a_3d_network_in_two_processes(la_set, tmp_path):
    import subprocess
    import sys

    from clcc.config import dump_config

    cfg = load_config(None, [*TINY, "model.name=vnet", "model.widths=[2,4,8,16,32]",
                             "model.spatial_dims=3", "data.patch=[16,16,16]",
                             f"data.root={la_set}", f"train.output={tmp_path}",
                             "train.iterations=2", "train.eval_every=2", "train.name=ddp3d",
                             "method.name=mean-teacher"])
    path = tmp_path / "ddp.yaml"
    path.write_text(dump_config(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_port=29519", "-m", "clcc", "train", "--config", str(path)],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((cfg.run_dir() / "results.json").read_text())
    assert results["world_size"] == 2 and results["ranks_in_sync"] is True
    assert results["steps"] == 2 and "dice_lcc" in results["test"]


def test_clcc_trains_the_vnet_without_its_dropout_unless_the_config_sets_one():
    """Each of CLCC's two passes would drop other channels of the V-Net's maps; by default its
    V-Net has no dropout (the other methods keep UA-MT's Dropout3d(0.5)), and `model.dropout`
    still sets one."""
    from clcc.methods import build_method

    def dropouts(name, **args):
        method = build_method(name, (32, 32, 32), {"n": 2} if name == "clcc" else None,
                              in_channels=1, spatial_dims=3, architecture="vnet", **args)
        return [m.p for m in method.model.modules() if isinstance(m, torch.nn.Dropout3d)]

    assert dropouts("clcc") == []
    assert dropouts("supervised") == [0.5, 0.5]  # the bottleneck's and the last map's
    assert dropouts("clcc", dropout=[0, 0, 0, 0, 0.5]) == [0.5, 0.5]


def test_batchnorm_of_a_3d_network_is_re_estimated_on_training_patches(la_set, tmp_path):
    """`train.recalibrate_bn` and `clcc evaluate --recalibrate-bn` on volumes: the statistics
    come from random patches of the training pool's volumes only (a test volume made very
    bright would show in the first layer's mean), the same patches every time."""
    from clcc.cli import main
    from clcc.data.volume_data import open_prepared
    from clcc.engine.evaluate import PATCHES_PER_VOLUME, pool_inputs, recalibrate_batchnorm
    from clcc.engine.predict import load_trained_model
    from clcc.engine.runtime import make_runtime
    from clcc.engine.trainer import train

    cfg = load_config(None, [*TINY, "model.name=vnet", "model.widths=[2,4,8,16,32]",
                             "model.spatial_dims=3", "data.patch=[16,16,16]",
                             f"data.root={la_set}", f"train.output={tmp_path}",
                             "train.iterations=2", "train.eval_every=2",
                             "train.recalibrate_bn=true"])
    train(cfg)  # re-estimates before its validation (a list of memory maps, not an array)
    data = open_prepared(la_set, 3, 0, patch=(16, 16, 16))
    runtime = make_runtime("cpu", "fp32")
    batches = list(pool_inputs(data, runtime))
    assert sum(len(b) for b in batches) == PATCHES_PER_VOLUME * len(data.training_pool())
    assert batches[0].shape[1:] == (1, 16, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(batches, pool_inputs(data, runtime),
                                                 strict=True))
    test = data.subset("test")
    for name in test:
        data.images[data.names.index(name)] = np.full((18, 20, 24), 1e4, np.float32)
    _, model, _ = load_trained_model(cfg.run_dir() / "best.pt", "cpu")
    recalibrate_batchnorm(model, pool_inputs(data, runtime))
    first = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d))
    assert 0 < first.running_mean.abs().max() < 100  # ~1e3 with a bright volume among them
    assert main(["evaluate", "--checkpoint", str(cfg.run_dir() / "best.pt"), "--recalibrate-bn",
                 "--output", str(tmp_path / "ev")]) == 0
    assert "dice" in json.loads((tmp_path / "ev" / "summary.json").read_text())


def test_the_dropout_probe_trains_clcc_with_one_vnet_dropout_removed(la_set, tmp_path,
                                                                    monkeypatch):
    """benchmarks/vnet_dropout_probe.py: the kept layer still drops channels, the other is an
    identity from the first step on, and the run folder says which."""
    import importlib.util

    from clcc.engine.trainer import Trainer

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "vnet_dropout_probe.py"
    spec = importlib.util.spec_from_file_location("vnet_dropout_probe", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    seen = {}
    fit = Trainer.fit

    def fit_and_look(trainer):
        model = trainer.method.model
        seen.update(head=type(model.head_dropout), bottleneck=type(model.bottleneck_dropout))
        return fit(trainer)

    monkeypatch.setattr(Trainer, "fit", fit_and_look)
    sets = [*TINY, "model.name=vnet", "model.widths=[2,4,8,16,32]", "model.spatial_dims=3",
            "data.patch=[32,32,32]", f"data.root={la_set}", f"train.output={tmp_path}",
            "train.iterations=1", "train.eval_every=1", "method.name=clcc", "method.params.n=2",
            "model.dropout=[0,0,0,0,0.5]", "train.name=probe"]
    probe.main(["--keep", "head", *[a for s in sets for a in ("--set", s)]])
    assert seen == {"head": torch.nn.Dropout3d, "bottleneck": torch.nn.Identity}
    assert json.loads((tmp_path / "probe" / "probe.json").read_text()) == {
        "kept": "head_dropout", "removed": "bottleneck_dropout"}
    assert (tmp_path / "probe" / "results.json").exists()
    with pytest.raises(SystemExit, match="no head_dropout to keep"):
        probe.main(["--keep", "head", *[a for s in sets[:-2] for a in ("--set", s)],
                    "--set", "train.name=probe2"])
