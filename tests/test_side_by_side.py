"""The side-by-side harness's reductions of the authors' scripts (benchmarks/authors): each
replacement must match its published script exactly once, or the run would train something
else (or fail an hour in). Skips without the checkouts beside the project."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "authors"
sys.path.insert(0, str(HARNESS))

from recipes import LA_QUICK, RECIPES, uamt_la_reduction  # noqa: E402

CHECKOUTS = {"HiLab-git/SSL4MIS": ("SSL4MIS", "SSL4MIS_CHECKOUT"),
             "LiheYoung/UniMatch": ("UniMatch", "UNIMATCH_CHECKOUT"),
             "yulequan/UA-MT": ("UA-MT", "UAMT_CHECKOUT"),
             "DeepMed-Lab-ECNU/BCP": ("BCP", "BCP_CHECKOUT")}


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
    import side_by_side

    log = "\n".join(["iteration 149 : loss: 0.5, loss_dice: 0.4, loss_ce: 0.1",
                     "iteration 150 : loss: 0.5, loss_dice: 0.4, loss_ce: 0.1",
                     "average metric is 0.25", "iteration 1 : loss: 0.3, loss_l: 0.1, loss_u: 0.2",
                     "iteration 150 : loss: 0.3, loss_l: 0.1, loss_u: 0.2",
                     "average metric is 0.375"])
    assert side_by_side.validation_curve(log, RECIPES["bcp-la"]) == [(150, 25.0), (300, 37.5)]
