"""The side-by-side harness's reductions of the authors' scripts (benchmarks/authors): each
replacement must match its published script exactly once, or the run would train something
else (or fail an hour in). Skips without the checkouts beside the project."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "authors"
sys.path.insert(0, str(HARNESS))

from kinds import bcp_curve, kvasir_root  # noqa: E402
from recipes import LA_QUICK, RECIPES, uamt_la_reduction  # noqa: E402

CHECKOUTS = {"HiLab-git/SSL4MIS": ("SSL4MIS", "SSL4MIS_CHECKOUT"),
             "LiheYoung/UniMatch": ("UniMatch", "UNIMATCH_CHECKOUT"),
             "yulequan/UA-MT": ("UA-MT", "UAMT_CHECKOUT"),
             "DeepMed-Lab-ECNU/BCP": ("BCP", "BCP_CHECKOUT"),
             "ShinkaiZ/CLCC-semi": ("CLCC-semi", "CLCC_SEMI_CHECKOUT")}


def _checkout(repo: str, relative: str) -> Path:
    name, variable = CHECKOUTS[repo]
    checkout = Path(os.environ.get(variable, Path(__file__).parents[2] / "authors" / name))
    if not (checkout / relative).is_file():
        pytest.skip(f"no {name} checkout at {checkout} (set {variable})")
    return checkout


def _script(repo: str, relative: str) -> str:
    return (_checkout(repo, relative) / relative).read_text()


@pytest.mark.parametrize("name", sorted(n for n, r in RECIPES.items() if r.patch))
def test_every_reduction_matches_its_script_once(name):
    recipe = RECIPES[name]
    text = _script(recipe.repo, recipe.script)
    for old, _ in recipe.patch:
        assert text.count(old) == 1, old


def test_la_quick_constants_are_written_into_uamt_scripts():
    """The copy of UA-MT's LA script carries LA quick's patch, labelled range and lr step."""
    recipe = RECIPES["uamt-la"]
    text = _script(recipe.repo, recipe.script)
    for old, new in uamt_la_reduction(recipe.script, LA_QUICK):
        text = text.replace(old, new)
    code = "\n".join(line.split("#")[0] for line in text.splitlines())
    assert "patch_size = (64, 64, 32)" in code and "list(range(8, 70))" in code
    assert "preds.reshape(T, stride, 2, 64, 64, 32)" in code and "112" not in code
    assert "iter_num % 250 == 0" in code and "2500" not in code


@pytest.mark.parametrize("name", sorted(n for n, r in RECIPES.items() if r.support))
def test_every_support_file_reduction_matches_once(name):
    recipe = RECIPES[name]
    for relative, replacements in recipe.support:
        text = _script(recipe.repo, str(Path(recipe.script).parent / relative))
        for old, _ in replacements:
            assert text.count(old) == 1, old


def test_bcp_la_copy_validates_on_the_run_list_and_keeps_the_cube_in_the_patch(tmp_path):
    """The run's copy of `LA_BCP_train.py` carries LA quick's patch, validation interval and
    lr step; beside it, `utils/` holds reduced copies of the two files with constants (the
    validation list: the run's, not the authors' test list; the cube's start: in the patch)
    and links to the rest, so the script imports the copies."""
    import side_by_side

    recipe = RECIPES["bcp-la"]
    checkout = _checkout(recipe.repo, recipe.script)
    originals = {p: p.read_bytes() for p in (checkout / "code" / "utils").iterdir()}
    copy = side_by_side.patched_script(checkout / recipe.script, recipe, tmp_path,
                                       Path("/runs/x/LA"))
    code = copy.read_text()
    assert "patch_size = (64, 64, 48)" in code and code.count("iter_num % 150 == 0") == 2
    assert "iter_num % 250 == 0" in code and "2500" not in code and "% 200 == 0" not in code
    assert code.count("stride_xy=32, stride_z=24)") == 2 and "stride_xy=18" not in code
    utils = tmp_path / "utils"
    validation = (utils / "test_3d_patch.py").read_text()
    head = validation.split("def var_all_case_LA(", 1)[1].split("\ndef ", 1)[0]
    assert "/runs/x/LA/val.list" in head and "byh_data" not in head
    assert "/runs/x/LA/2018LA_Seg_Training Set/" in head
    cube = (utils / "BCP_utils.py").read_text().split("def context_mask", 1)[1][:900]
    assert "112" not in cube and "img_x - patch_pixel_x" in cube
    assert (utils / "losses.py").is_symlink() and not (utils / "BCP_utils.py").is_symlink()
    assert (tmp_path / "script.diff").read_text().count("+++") == 3
    assert {p: p.read_bytes() for p in originals} == originals  # the checkout untouched


def test_bcp_la_validation_curve_counts_self_training_on():
    """BCP's log restarts its iteration count for self-training: the curve counts on."""
    log = "\n".join(["iteration 149 : loss: 0.5, loss_dice: 0.4, loss_ce: 0.1",
                     "iteration 150 : loss: 0.5, loss_dice: 0.4, loss_ce: 0.1",
                     "average metric is 0.25", "iteration 1 : loss: 0.3, loss_l: 0.1, loss_u: 0.2",
                     "iteration 150 : loss: 0.3, loss_l: 0.1, loss_u: 0.2",
                     "average metric is 0.375"])
    assert bcp_curve(log, RECIPES["bcp-la"]) == [(150, 25.0), (300, 37.5)]


def test_kvasir_layout_puts_clcc_selection_in_clcc_semi_fold_0(tmp_path):
    """CLCC-semi labels `sorted(train)[fold·k : (fold + 1)·k]`: the layout's names make fold
    0 exactly clcc's selection, and keep each image beside its own mask."""
    import json

    prepared, source = tmp_path / "prepared", tmp_path / "source"
    (prepared / "splits").mkdir(parents=True)
    source.mkdir()
    names = [f"case{c}" for c in "qwertyuiop"]
    cases = []
    for name in names:
        for kind in ("image", "mask"):
            (source / f"{name}-{kind}.jpg").write_text(f"{kind} of {name}")
        cases.append({"name": name, "image": str(source / f"{name}-image.jpg"),
                      "mask": str(source / f"{name}-mask.jpg")})
    (prepared / "manifest.json").write_text(json.dumps({"cases": cases}))
    lists = {"train": names[:6], "val": names[6:8], "test": names[8:], "labelled-0": ["casey",
                                                                                    "caseq"]}
    for split, members in lists.items():
        (prepared / "splits" / f"{split}.txt").write_text("\n".join(members) + "\n")
    data = kvasir_root(prepared, tmp_path / "run", 0)
    train = data / "Kvasir-SEG" / "TrainDataset"
    images = sorted(p.name for p in (train / "images").iterdir())
    k = int(len(images) * (2 / 6))  # CLCC-semi's fold length at LABEL = 2/6
    assert [n.split("_", 1)[1].removesuffix(".jpg") for n in images[:k]] == ["caseq", "casey"]
    assert sorted(p.name for p in (train / "masks").iterdir()) == images
    first = images[0]
    assert (train / "masks" / first).read_text() == "mask of caseq"
    assert (train / "images" / first).read_text() == "image of caseq"
    assert len(list((data / "Kvasir-SEG" / "TestDataset" / "images").iterdir())) == 2


def test_the_shim_runs_cuda_code_on_the_cpu(tmp_path):
    """In a process started with the shim: `.cuda()`, `.to(device='cuda')` (CLCC-semi's),
    `numpy.int` (BCP's) and `torch.load` of a checkpoint holding a NumPy scalar (CLCC-semi's)
    work on a machine without CUDA and a torch ≥ 2.6, and every change is printed."""
    import subprocess

    code = ("import sys, torch, numpy; x = torch.ones(2).cuda().to(device='cuda'); "
            "y = torch.zeros(1).to('cuda', torch.float64); "
            "torch.save({'best': numpy.float64(0.5)}, sys.argv[1]); "
            "print(x.device, y.device, y.dtype, numpy.int is int, torch.load(sys.argv[1])['best'])")
    env = {**os.environ, "SHIM_ACTIVE": "1", "PYTHONPATH": str(HARNESS / "shim")}
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "best.pth")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.split() == ["cpu", "cpu", "torch.float64", "True", "0.5"], result.stderr
    assert ".to('cuda') moves to the CPU" in result.stderr and "numpy.int" in result.stderr


def test_bcp_acdc_validation_curve_counts_self_training_on():
    log = "\n".join(["iteration 200: loss: 0.5, mix_dice: 0.4, mix_ce: 0.1",
                     "iteration 200 : mean_dice : 0.250000",
                     "iteration 375: loss: 0.5, mix_dice: 0.4, mix_ce: 0.1",
                     "iteration 1: loss: 0.3, mix_dice: 0.2, mix_ce: 0.1",
                     "iteration 200: loss: 0.3, mix_dice: 0.2, mix_ce: 0.1",
                     "iteration 200 : mean_dice : 0.500000",
                     "iteration 200 : mean_dice : 0.500000"])  # its two log handlers
    assert bcp_curve(log, RECIPES["bcp"]) == [(200, 25.0), (575, 50.0)]


def _fake_sources(tmp_path: Path) -> dict[str, Path]:
    """Lists and links of ACDC's, LA's and a prepared Kvasir-SEG's layout (no image data: the
    harness only links to it)."""
    import json

    acdc = tmp_path / "acdc"
    (acdc / "data").mkdir(parents=True)
    (acdc / "train_slices.list").write_text("".join(f"patient{k:03d}_frame01_slice_1\n"
                                                    for k in range(80)))
    (acdc / "val.list").write_text("patient090_frame01\n")
    (acdc / "test.list").write_text("patient095_frame01\n")
    la = tmp_path / "la"
    (la / "2018LA_Seg_Training Set").mkdir(parents=True)
    (la / "train.list").write_text("".join(f"case{k:02d}\n" for k in range(80)))
    (la / "test.list").write_text("".join(f"test{k:02d}\n" for k in range(20)))
    kvasir = tmp_path / "kvasir"
    (kvasir / "splits").mkdir(parents=True)
    names = [f"image{k}" for k in range(10)]
    (kvasir / "manifest.json").write_text(json.dumps({"cases": [
        {"name": n, "image": str(tmp_path / f"{n}.jpg"), "mask": str(tmp_path / f"{n}m.jpg")}
        for n in names]}))
    for split, members in {"train": names[:6], "val": names[6:8], "test": names[8:],
                           "labelled-0": names[:2]}.items():
        (kvasir / "splits" / f"{split}.txt").write_text("\n".join(members) + "\n")
    return {"acdc": acdc, "la": la, "kvasir": kvasir}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_starts_its_script_at_the_protocol(tmp_path, name):
    """Each recipe's set-up, run with a stand-in interpreter that only exits: the script (or
    its reduced copy in the run folder) is started with the protocol's arguments and seed, and
    `run.json` records the protocol; the checkout is never written."""
    import argparse
    import json

    import side_by_side
    from recipes import KVASIR_SBS, Protocol

    recipe = RECIPES[name]
    checkout = _checkout(recipe.repo, recipe.script)
    script = checkout / recipe.script
    before = script.read_bytes()
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\nexit 0\n")
    python.chmod(0o755)
    sources = _fake_sources(tmp_path)
    source = {"uamt-la": "la", "bcp-la": "la", "clcc-semi": "kvasir"}.get(recipe.kind, "acdc")
    out = tmp_path / "run"
    side_by_side.run_authors(argparse.Namespace(
        recipe=name, checkout=checkout, python=python, source=sources[source], seed=7,
        threads=1, out=out, iterations=None, prepared=sources["kvasir"]))
    record = json.loads((out / "run.json").read_text())
    command = record["command"]
    assert record["returncode"] == 0 and command[0] == str(python)
    if recipe.patch:  # a reduced copy in the run folder
        assert command[1].startswith(str(out))
    else:
        assert command[1] == str(script)
    assert script.read_bytes() == before
    config = out / "work" / "config.yaml"
    written = " ".join(command) + (config.read_text() if config.is_file() else "")
    if recipe.volumetric:
        assert record["protocol"]["iterations"] == recipe.volume.iterations == 600
        expected = ["--seed 7"]
    elif recipe.kind == "clcc-semi":
        assert record["protocol"]["epochs"] == KVASIR_SBS.epochs
        expected = ["SEED: 7", f"EPOCHS: {KVASIR_SBS.epochs}"]
    else:
        assert record["protocol"]["iterations"] == recipe.iterations(Protocol())
        expected = {"unimatch": ["crop_size: 128"],  # seeded by the shim
                    "bcp-acdc": ["--seed 7"]}.get(  # its own two stage lengths
            recipe.kind, ["--seed 7", f"--max_iterations {Protocol().iterations}"])
    assert all(text in written for text in expected), (expected, written)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_clcc_trains_in_fp32_as_the_authors_scripts_do(tmp_path, name):
    """clcc's `auto` precision is bf16 autocast on a CPU with AMX or AVX512-BF16; the authors'
    scripts train in fp32, so clcc's side asks for fp32 (a caller's `--set` still wins)."""
    import argparse

    import side_by_side

    from clcc.config import load_config

    args = argparse.Namespace(recipe=name, prepared=tmp_path, seed=0, threads=1,
                              out=tmp_path / "run", iterations=None, set=[])
    overrides = side_by_side.clcc_overrides(args)
    config = side_by_side.HERE.parents[1] / "configs" / RECIPES[name].config
    assert load_config(config, overrides).train.precision == "fp32"
    args.set = ["train.precision=bf16"]
    assert load_config(config, side_by_side.clcc_overrides(args)).train.precision == "bf16"


def test_unlabelled_losses_read_both_logs_by_unimatch_epoch():
    """benchmarks/authors/unlabelled_losses.py: the script's last running mean of each epoch;
    clcc's logged epochs (11 steps) grouped by the UniMatch epoch (207 steps) their last step
    falls in, the last one cut short at the run's end."""
    from unlabelled_losses import clcc_losses, script_losses

    script = ("===========> Epoch: 0\nIters: 0, Loss x: 1.0, Loss s: 0.750, Mask ratio: 0.0\n"
              "Iters: 25, Loss x: 0.9, Loss s: 0.740, Mask ratio: 0.1\n"
              "===========> Epoch: 1\nIters: 0, Loss x: 0.5, Loss s: 0.570, Mask ratio: 0.9\n")
    assert script_losses(script) == [0.74, 0.57]
    clcc = "".join(f"epoch {k}  train/loss_u_s1=0.{k:02d}00  train/loss_u_s2=0.{k:02d}00  "
                   f"train/sup=1.0  (1.0s)\n" for k in range(1, 5))
    # epochs of 11 steps end at 11, 22, 33, 44 → epochs of 20 steps 0, 1, 1, 1 (a 40-step
    # run's last logged epoch ends at 40, not 44)
    assert clcc_losses(clcc, 11, 20, 40) == pytest.approx([0.01, 0.03])


def test_a_clcc_run_records_the_commit_it_started_from(tmp_path, monkeypatch):
    """A run trains the code of its start; a commit made while it trains (an hour here) is
    not its code, so the commit is read before the training starts."""
    import argparse
    import subprocess

    import side_by_side

    ran = []
    monkeypatch.setattr(side_by_side, "commit_of", lambda path: "later" if ran else "started")

    def train(command, **kwargs):
        ran.append(command)
        (tmp_path / "run").mkdir()
        return subprocess.CompletedProcess(command, 0, stdout="", stderr="")

    monkeypatch.setattr(side_by_side.subprocess, "run", train)
    args = argparse.Namespace(recipe="ssl4mis-supervised", prepared=tmp_path, seed=0,
                              threads=1, out=tmp_path / "run", iterations=None, set=[],
                              config=None)
    side_by_side.run_clcc(args)
    assert ran and json.loads((tmp_path / "run" / "run.json").read_text())["commit"] == "started"


def test_score_with_batchnorm_re_estimated_is_clcc_evaluates(checkpoint, synth_prepared,
                                                            tmp_path, monkeypatch):
    """`score --recalibrate-bn` tells a run's weights from its running statistics: its first
    figure is the plain score, its second the one `clcc evaluate --recalibrate-bn` gives."""
    import argparse
    import dataclasses

    import side_by_side

    from clcc.cli import main

    kind = side_by_side.KINDS["ssl4mis"]
    monkeypatch.setitem(side_by_side.KINDS, "ssl4mis", dataclasses.replace(kind, size=32))
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"side": "clcc", "recipe": "ssl4mis-supervised",
                                              "checkpoint": str(checkpoint)}))
    side_by_side.score(argparse.Namespace(run=run, prepared=synth_prepared, threads=1,
                                          recalibrate_bn=True))
    summary = json.loads((run / "summary.json").read_text())
    figures = {}
    for flag in ([], ["--recalibrate-bn"]):
        out = tmp_path / f"evaluate{len(flag)}"
        assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(synth_prepared),
                     "--device", "cpu", "--output", str(out), *flag]) == 0
        figures[bool(flag)] = json.loads((out / "summary.json").read_text())["dice"]["mean"]
    assert figures[False] != figures[True]  # the statistics matter on this checkpoint
    assert summary["dice"]["mean"] == pytest.approx(figures[False])
    assert summary["recalibrated_bn"]["dice"]["mean"] == pytest.approx(figures[True])
    assert (run / side_by_side.RECALIBRATED_CSV).is_file()


def test_training_losses_read_both_logs_by_window():
    """benchmarks/authors/training_losses.py: the script's per-iteration losses averaged over
    each window, clcc's logged epochs grouped by the window their last step falls in."""
    from training_losses import CLCC_LOSS, script_losses
    from unlabelled_losses import clcc_losses

    script = "".join(f"iteration {i} : model loss : {i / 10:f}\n" for i in range(1, 7))
    script += "iteration 6 : model_mean_dice : 0.500000 model_mean_hd95 : 9.0\n"
    assert script_losses(script, 4) == pytest.approx([0.25, 0.55])  # 1–4, then 5–6
    clcc = "".join(f"epoch {k}  train/loss={k}.0000  train/loss_u_s=9.0000  (1.0s)\n"
                   for k in range(1, 5))
    # epochs of 3 steps end at 3, 6, 9, 12 → windows of 6 steps 0, 0, 1, 1
    assert clcc_losses(clcc, 3, 6, 12, CLCC_LOSS) == pytest.approx([1.5, 3.5])
