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
             "yulequan/UA-MT": ("UA-MT", "UAMT_CHECKOUT")}


def _script(repo: str, relative: str) -> str:
    name, variable = CHECKOUTS[repo]
    checkout = Path(os.environ.get(variable, Path(__file__).parents[2] / "authors" / name))
    if not (checkout / relative).is_file():
        pytest.skip(f"no {name} checkout at {checkout} (set {variable})")
    return (checkout / relative).read_text()


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
