"""The side-by-side report: Welch's interval, verdicts, the table and the figure."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from clcc.report.fidelity import (
    curves_figure,
    curves_table,
    fidelity_rows,
    read_runs,
    runs_table,
    verdict,
)
from clcc.report.stats import welch_interval


def test_welch_interval_by_hand_and_against_scipy():
    a, b = [2.0, 4.0], [1.0, 1.5, 2.0]
    got = welch_interval(a, b)
    # means 3 and 1.5; variances of the means 2/2 = 1 and 0.25/3
    assert got["mean_diff"] == pytest.approx(1.5)
    se = math.sqrt(1 + 0.25 / 3)
    dof = (1 + 0.25 / 3) ** 2 / (1 / 1 + (0.25 / 3) ** 2 / 2)
    half = stats.t.ppf(0.975, dof) * se
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((1.5 - half, 1.5 + half))
    reference = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((reference.low, reference.high))


def test_verdicts():
    assert verdict([44.0], [23.0])[1] == "1 seed a side: not decided"
    assert verdict([44.0], [23.0, 30.0])[1] == "1 seed on one side: not decided"
    assert verdict([44.0, 45.0, 46.0], [23.0, 20.0, 22.0])[1] == "differs"
    assert verdict([44.0, 40.0, 48.0], [45.0, 41.0, 47.0])[1] == (
        "not decided (interval wider than ±5)")  # holds 0, reaches past ±5: −8.6 … +8.0
    assert verdict([44.0, 44.5, 45.0, 44.2], [44.3, 44.8, 44.6, 44.1])[1] == "same (within ±5)"


def _run(folder, side, recipe, seed, dice, curve=((100, 10.0), (200, 20.0)), recalibrated=None):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(
        {"side": side, "recipe": recipe, "seed": seed, "wall_s": 600, "cpu": "test CPU"}))
    summary = {"dice": {"mean": dice / 100}}
    if recalibrated is not None:
        summary["recalibrated_bn"] = {"dice": {"mean": recalibrated / 100}}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "validation.csv").write_text(
        "iteration,val_dice\n" + "".join(f"{i},{d}\n" for i, d in curve))


def test_rows_group_runs_by_recipe_and_side(tmp_path):
    for seed, (ours, theirs) in enumerate([(40.0, 44.0), (42.0, 45.0)]):
        _run(tmp_path / f"fm-clcc-{seed}", "clcc", "fixmatch", seed, ours)
        _run(tmp_path / f"fm-authors-{seed}", "authors", "fixmatch", seed, theirs)
    _run(tmp_path / "sup-authors-0", "authors", "supervised", 0, 37.0)
    _run(tmp_path / "fm-clcc-old", "clcc", "fixmatch", 0, 10.0)
    record = json.loads((tmp_path / "fm-clcc-old" / "run.json").read_text())
    (tmp_path / "fm-clcc-old" / "run.json").write_text(json.dumps({**record, "stage": "before"}))
    (tmp_path / "unscored").mkdir()  # a run without summary.json yet is left out
    runs = read_runs(tmp_path)
    assert len(runs) == 6  # the run of an earlier stage is listed, not pooled
    rows = {r["recipe"]: r for r in fidelity_rows(runs)}
    assert rows["fixmatch"]["authors"] == f"44.50 ± {np.std([44, 45], ddof=1):.2f} (n = 2)"
    assert rows["fixmatch"]["difference"].startswith("+3.50 [")
    assert rows["supervised"]["verdict"] == "one side not run yet"
    _run(tmp_path / "plain-authors-0", "authors", "fixmatch-plain", 0, 47.0)
    shared = {r["recipe"]: r for r in fidelity_rows(read_runs(tmp_path),
                                                    {"fixmatch-plain": "fixmatch"})}
    assert shared["fixmatch-plain"]["clcc"] == rows["fixmatch"]["clcc"]  # the same clcc runs
    assert shared["fixmatch-plain"]["difference"] == "+6.00"  # 47 − 41
    alone = {r["recipe"]: r for r in fidelity_rows(read_runs(tmp_path))}
    assert alone["fixmatch-plain"]["verdict"] == "one side not run yet"
    curves_figure(runs, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_every_run_row_has_its_best_validation_or_says_none_was_logged(tmp_path):
    """UA-MT's LA scripts never validate: their row says so rather than 'nan'."""
    _run(tmp_path / "la-authors-0", "authors", "uamt-la", 0, 38.97, curve=())
    _run(tmp_path / "la-clcc-0", "clcc", "uamt-la", 0, 37.37, curve=((150, 10.35), (300, 36.12)),
         recalibrated=41.5)
    rows = runs_table(read_runs(tmp_path)).splitlines()[2:]
    assert rows == ["| uamt-la | authors | 0 | final | fp32 | 38.97 | — | — (none logged) | 10.0 |",
                    "| uamt-la | clcc | 0 | final | auto | 37.37 | 41.50 | 36.12 | 10.0 |"]


def test_the_page_carries_each_pooled_runs_curve_as_text_with_its_best_in_bold(tmp_path):
    _run(tmp_path / "la-authors-0", "authors", "uamt-la", 0, 38.97, curve=())
    _run(tmp_path / "la-clcc-1", "clcc", "uamt-la", 1, 33.0, curve=((150, 10.34), (300, 36.12),
                                                                    (450, 30.0)))
    _run(tmp_path / "la-clcc-0", "clcc", "uamt-la", 0, 37.37, curve=((150, 40.0), (300, 36.0)))
    _run(tmp_path / "la-clcc-old", "clcc", "uamt-la", 0, 9.0, curve=((150, 1.0),))
    record = json.loads((tmp_path / "la-clcc-old" / "run.json").read_text())
    (tmp_path / "la-clcc-old" / "run.json").write_text(json.dumps({**record, "stage": "before"}))
    rows = curves_table(read_runs(tmp_path)).splitlines()[2:]
    assert rows == ["| uamt-la | authors | 0 | — (none logged) |",
                    "| uamt-la | clcc | 0 | 150: **40.0** · 300: 36.0 |",
                    "| uamt-la | clcc | 1 | 150: 10.3 · 300: **36.1** · 450: 30.0 |"]


def test_a_clcc_seed_run_again_in_fp32_counts_once_in_fp32(tmp_path):
    """clcc's `auto` precision was bf16 autocast on these CPUs and the authors' scripts train
    in fp32: where a seed was trained both ways, the row pools the fp32 run only; the runs
    table lists both with their precision."""
    _run(tmp_path / "a-0", "authors", "fixmatch", 0, 50.0)
    _run(tmp_path / "a-1", "authors", "fixmatch", 1, 60.0)
    _run(tmp_path / "c-0", "clcc", "fixmatch", 0, 30.0)  # auto, no fp32 twin: kept
    _run(tmp_path / "c-1", "clcc", "fixmatch", 1, 20.0)  # auto, superseded
    _run(tmp_path / "c-1-fp32", "clcc", "fixmatch", 1, 40.0)
    record = json.loads((tmp_path / "c-1-fp32" / "run.json").read_text())
    record["command"] = ["clcc", "train", "--set", "train.precision=fp32"]
    (tmp_path / "c-1-fp32" / "run.json").write_text(json.dumps(record))
    runs = read_runs(tmp_path)
    (row,) = fidelity_rows(runs)
    assert row["clcc"] == f"35.00 ± {np.std([30, 40], ddof=1):.2f} (n = 2)"
    table = runs_table(runs)
    assert "| fixmatch | clcc | 1 | final | auto | 20.00 | — |" in table
    assert "| fixmatch | clcc | 1 | final | fp32 | 40.00 | — |" in table


def test_the_re_estimated_rows_pool_only_the_runs_scored_so(tmp_path):
    _run(tmp_path / "a-0", "authors", "fixmatch", 0, 36.0, recalibrated=43.0)
    _run(tmp_path / "a-1", "authors", "fixmatch", 1, 30.0)  # scored before the option
    _run(tmp_path / "c-0", "clcc", "fixmatch", 0, 27.0, recalibrated=34.0)
    _run(tmp_path / "u-0", "authors", "urpc", 0, 32.0, recalibrated=54.6)
    runs = read_runs(tmp_path)
    rows = {r["recipe"]: r for r in fidelity_rows(runs, recalibrated=True)}
    assert rows["fixmatch"]["authors"] == "43.00 (n = 1)" and rows["fixmatch"]["clcc"] == (
        "34.00 (n = 1)")
    assert rows["fixmatch"]["difference"] == "+9.00"
    assert rows["urpc"]["verdict"] == "one side not run yet"
    assert {r["recipe"]: r for r in fidelity_rows(runs)}["fixmatch"]["authors"].startswith(
        "33.00 ± ")  # the as-trained row keeps both authors' runs

