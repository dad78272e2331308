"""The experiment grid → tables, figures and the HTML report, checked in a headless Chromium."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from clcc.data.prepare import prepare
from clcc.data.synthetic import write_synthetic
from clcc.errors import ClccError
from clcc.experiment import (
    PlannedRun,
    Variant,
    _Scheduler,
    order_grid,
    plan_grid,
    run_config,
    run_grid,
    run_left_s,
    time_left_s,
    whole_run_s,
)
from clcc.report.stats import (
    hierarchical_bootstrap,
    paired_comparison,
    selection_interval,
    sign_flip_p,
)
from clcc.report.tables import markdown_table, summarise_runs, write_tables

from conftest import TINY
from helpers import locked_elsewhere

CRAFTED = "<img src=x onerror=window.pwned=1>"  # a legal file name that is also markup


def test_labels_of_entries():
    assert Variant("supervised").label == "Supervised"
    assert Variant("clcc:n=4,alpha=0").label == "CLCC (n=4, w/o contrast)"
    assert Variant("clcc:n=4,patch_bn=frozen,train.recalibrate_bn=true").label == (
        "CLCC (n=4, frozen patch BN, recalibrated BN)")
    labelled = Variant("CLCC+BN=clcc:n=4,patch_bn=frozen,train.recalibrate_bn=true")
    assert labelled.label == "CLCC+BN" and labelled.method == "clcc"
    assert labelled.entry == "clcc:n=4,patch_bn=frozen,train.recalibrate_bn=true"
    assert labelled.slug == "clcc+bn"  # a short folder name (issue 30: not the overrides)
    assert Variant(labelled.entry).slug == "clcc-n4-patch_bnfrozen-train.recalibrate_bntrue"
    assert labelled.params == {"n": 4, "patch_bn": "frozen", "train.recalibrate_bn": True}
    assert Variant("Base=supervised").label == "Base" and Variant("Base=supervised").slug == (
        "base")


def test_table_csv_quotes_entries_and_carries_labels(tmp_path: Path):
    import csv as csv_module

    runs = []
    for spec in ("supervised", "Mine=clcc:n=4,alpha=0"):
        v = Variant(spec)
        run = {**_run_with_dice(tmp_path, v.slug, [0.5, 0.7]), "variant": v.entry,
               "label": v.label, "selection": 0, "test": {m: {"mean": 0.5} for m in
                                                           ("mae", "dice", "iou")},
               "val": {"dice": {"mean": 0.6}}}
        runs.append(run)
    write_tables(runs, tmp_path)
    rows = list(csv_module.reader((tmp_path / "table.csv").read_text().splitlines()))
    assert rows[0] == ["method", "label", "selection", "mae", "dice", "iou", "val_dice"]
    assert rows[2][:3] == ["clcc:n=4,alpha=0", "Mine", "0"]
    md = (tmp_path / "table.md").read_text()
    assert "| Mine | " in md and "`clcc:n=4,alpha=0` |" in md and "| Mine − Supervised |" in md


def test_variant_entries():
    v = Variant("clcc:n=4,alpha=0")
    assert (v.method, v.params, v.slug) == ("clcc", {"n": 4, "alpha": 0}, "clcc-n4-alpha0")
    assert Variant("supervised").params == {}


def test_variant_dotted_keys_set_the_runs_config(tmp_path: Path):
    variant = Variant("clcc:n=4,patch_bn=frozen,train.recalibrate_bn=true")
    cfg, _ = run_config(None, [], variant, 2, tmp_path)
    assert cfg.method.params == {"n": 4, "patch_bn": "frozen"}
    assert cfg.train.recalibrate_bn is True and cfg.data.selection == 2
    assert cfg.run_dir() == tmp_path / "clcc-n4-patch_bnfrozen-train.recalibrate_bntrue-sel2"
    assert run_config(None, [], Variant("clcc"), 2, tmp_path)[0].train.recalibrate_bn is False
    labelled = Variant("CLCC+BN=clcc:n=4,patch_bn=frozen,train.recalibrate_bn=true")
    assert run_config(None, [], labelled, 0, tmp_path)[0].run_dir() == tmp_path / "clcc+bn-sel0"
    assert labelled.label == "CLCC+BN" and Variant("Sup.V1!=supervised").slug == "sup.v1"
    with pytest.raises(ClccError, match="recalibrate"):
        run_config(None, [], Variant("clcc:train.recalibrate=true"), 0, tmp_path)


def test_time_left_counts_a_resumed_run_as_the_part_it_trained():
    assert whole_run_s(100.0, 45, 60) == pytest.approx(400.0)  # 15 of 60 epochs in 100 s
    assert whole_run_s(100.0, 0, 60) == pytest.approx(100.0)


def test_time_left_follows_each_runs_own_pace():
    # the case that printed "about 00:02:35 left": supervised finished in 7 min, CLCC at epoch
    # 16/30 after 17 min still needs 17 * 14 / 16 = 14.9 min on its own
    clcc = run_left_s(17 * 60.0, 0, 16, 30)
    assert clcc == pytest.approx(17 * 60 * 14 / 16)
    assert time_left_s([clcc], 0, 7 * 60.0, jobs=2) == pytest.approx(clcc)
    assert run_left_s(100.0, 10, 10, 30) is None  # resumed at 10, no epoch of its own yet
    assert time_left_s([None, 300.0], 2, None, jobs=2) == pytest.approx((300 * 4) / 2)
    assert time_left_s([], 3, 100.0, jobs=1) == pytest.approx(300.0)


def test_table_rows_by_hand():
    def run(variant, selection, dice):
        metric = {"mean": dice, "std": 0.0}
        return {"variant": variant, "selection": selection,
                "test": {"dice": metric, "iou": metric, "mae": metric},
                "val": {"dice": metric}}

    rows = summarise_runs([run("a", 0, 0.5), run("a", 1, 0.7), run("b", 0, 0.6)])
    assert rows[0]["dice"]["mean"] == pytest.approx(60.0)
    assert rows[0]["dice"]["std"] == pytest.approx(2 ** 0.5 * 10)  # sample std: √(200 / 1)
    assert rows[1]["dice"]["std"] == 0.0  # one selection
    assert rows[0]["dice"]["per_selection"] == pytest.approx([50.0, 70.0])
    assert "| a | 60.00 ± 14.14 | 60.00 ± 14.14 |" in markdown_table(rows)


def test_curves_mark_each_methods_stage_boundary_once(tmp_path: Path, monkeypatch):
    import matplotlib.axes

    from clcc.report.figures import stage_boundary, training_curves

    def log(stages):
        return [{"epoch": e, "train/loss": 1.0 / e, "train/stage": st, "val/dice": 0.5}
                for e, st in enumerate(stages, start=1)]

    clcc_log = log([1.0, 1.0, 2.0, 2.0])
    assert stage_boundary(clcc_log) == 3
    lines = []
    monkeypatch.setattr(matplotlib.axes.Axes, "axvline",
                        lambda ax, x, **kw: lines.append(x))
    training_curves({"clcc": {0: clcc_log, 1: clcc_log, 2: clcc_log},
                     "supervised": {0: log([1.0] * 4)}}, tmp_path / "curves.png")
    assert lines == [2.5, 2.5]  # one per panel, not one per selection
    legend = []
    monkeypatch.setattr(matplotlib.axes.Axes, "legend",
                        lambda ax, handles, **kw: legend.extend(h.get_label() for h in handles))
    training_curves({"clcc": {1: clcc_log}, "supervised": {0: clcc_log, 2: clcc_log}},
                    tmp_path / "curves.png")
    assert legend == ["clcc", "supervised", "selection 0", "selection 1", "selection 2"]
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_figure_column_titles_break_long_entries_after_commas():
    from clcc.report.figures import column_title

    assert column_title("supervised") == "supervised"
    assert column_title("clcc:n=4,beta=0") == "clcc:n=4,beta=0"
    assert column_title("clcc:n=4,patch_bn=frozen,train.recalibrate_bn=true") == (
        "clcc:n=4,\npatch_bn=frozen,\ntrain.recalibrate_bn=true")


def test_paired_comparison_by_hand():
    a, b = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]), np.array([0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    result = paired_comparison(a, b)
    assert result["mean_diff"] == pytest.approx(0.1)
    assert result["ci_low"] == pytest.approx(0.1) and result["ci_high"] == pytest.approx(0.1)
    # six equal differences: of the 2^6 sign patterns only all-plus and all-minus reach the
    # observed |mean|
    assert result["p_mean"] == pytest.approx(2 / 64)
    assert paired_comparison(a, a)["p_mean"] == 1.0
    assert sign_flip_p(np.array([1.0, 2.0, 3.0])) == pytest.approx(2 / 8)  # |±1±2±3| ≥ 6
    assert sign_flip_p(np.array([3.0, -1.0])) == 1.0  # |±3±1| ≥ 2 for all 4 patterns


def test_interval_over_selections_by_hand():
    # deltas +2.66 / +6.01 / +1.61: mean 3.427, sd 2.296, t(0.975, 2) = 4.303 → ±5.71
    result = selection_interval([2.66, 6.01, 1.61])
    assert result["mean_diff"] == pytest.approx(3.4267, abs=1e-4)
    assert result["ci_low"] == pytest.approx(-2.2819, abs=1e-3)
    assert result["ci_high"] == pytest.approx(9.1352, abs=1e-3)
    assert np.isnan(selection_interval([1.0])["ci_low"])


def test_hierarchical_bootstrap_counts_both_levels():
    same = hierarchical_bootstrap([np.full(50, 2.0)] * 3, n_boot=200)
    assert same["ci_low"] == same["ci_high"] == same["mean_diff"] == 2.0
    # images agree within each selection, selections differ: the interval spans the selections
    spread = hierarchical_bootstrap([np.full(50, 1.0), np.full(50, 5.0)], n_boot=2000)
    assert spread["ci_low"] == pytest.approx(1.0) and spread["ci_high"] == pytest.approx(5.0)
    noisy = hierarchical_bootstrap([np.array([0.0, 4.0] * 25)] * 2, n_boot=2000)
    assert noisy["ci_low"] < 2.0 < noisy["ci_high"]  # image-level noise widens it as well


def _run_with_dice(root: Path, name: str, dice: list[float]) -> dict:
    run = root / name
    run.mkdir(parents=True)
    rows = "".join(f"c{i},{d}\n" for i, d in enumerate(dice))
    (run / "test_per_image.csv").write_text("case,dice\n" + rows)
    return {"run": str(run)}


def test_comparison_with_reference_by_hand(tmp_path: Path):
    from clcc.report.compare import compare_with_reference, comparison_lines, verdict

    runs = []
    for selection, (ref, new) in enumerate([([0.5, 0.6], [0.6, 0.7]),   # +10 on both images
                                            ([0.5, 0.5], [0.5, 0.6])]):  # +0 and +10
        runs.append({**_run_with_dice(tmp_path, f"ref{selection}", ref), "variant": "ref",
                     "selection": selection})
        runs.append({**_run_with_dice(tmp_path, f"new{selection}", new), "variant": "new",
                     "selection": selection})
    [c] = compare_with_reference(runs, "ref")
    assert (c["a"], c["b"], c["selections"]) == ("new", "ref", [0, 1])
    assert c["per_selection"] == pytest.approx([10.0, 5.0])
    # t-interval over 2 selections: mean 7.5, sd 3.536, t(0.975, 1) = 12.706 → ±31.77
    assert c["over_selections"]["mean_diff"] == pytest.approx(7.5)
    assert c["over_selections"]["ci_low"] == pytest.approx(7.5 - 31.765, abs=1e-2)
    assert c["images"]["mean_diff"] == pytest.approx(7.5) and c["images"]["n"] == 2
    assert verdict(c) == "no difference shown"
    assert "| new − ref | +10.00 / +5.00 | +7.50 |" in "\n".join(comparison_lines([c]))


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("experiment")
    write_synthetic(root / "raw", count=30, size=48)
    for folder in ("images", "masks"):  # every case name carries the crafted markup
        for path in sorted((root / "raw" / folder).iterdir()):
            path.rename(path.with_name(CRAFTED + path.name))
    prepare("folder", root / "raw", root / "prepared", labelled=6, selections=(0, 1), size=32)
    overrides = [*TINY, f"data.root={root / 'prepared'}"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run_grid(None, overrides, ["supervised", "mean-teacher"], [0, 1], root / "grid",
                 poll_s=0.2)
    (root / "grid" / "printed.txt").write_text(printed.getvalue())
    return root / "grid"


@pytest.mark.slow
def test_grid_shows_progress_per_epoch_and_per_run(experiment: Path):
    printed = (experiment / "printed.txt").read_text()
    assert printed.startswith("experiment: 4 runs, 0 already done")
    assert re.search(r"-sel\d: epoch [12]/2  \[[0-3]/4 runs done, elapsed \d\d:\d\d:\d\d, "
                     r"about \d\d:\d\d:\d\d left\]", printed)
    done = [line for line in printed.splitlines() if line.startswith("  done ")]
    assert len(done) == 4 and done[-1].startswith("  done  mean-teacher-sel1 in ")
    assert "[4/4 runs done, elapsed " in done[-1] and done[-1].endswith("about 00:00:00 left]")


@pytest.mark.slow
def test_grid_writes_tables_figures_and_a_safe_page(experiment: Path):
    for name in ("table.md", "table.csv", "table.json", "report/index.html",
                 "report/curves.png", "report/qualitative.png"):
        assert (experiment / name).exists(), name
    page = (experiment / "report" / "index.html").read_text()
    assert CRAFTED not in page and "onerror=window" in page  # present, but only as data
    assert "http://" not in page and "https://" not in page
    overrides = [*TINY, f"data.root={experiment.parent / 'prepared'}"]
    again = run_grid(None, overrides, ["supervised", "mean-teacher"], [0, 1], experiment,
                     report=False)
    assert len(again["rows"]) == 2  # every run skipped: the grid resumes instead of retraining


@pytest.mark.slow
def test_grid_refuses_runs_made_with_another_config(experiment: Path, tmp_path: Path):
    shutil.copytree(experiment, tmp_path / "grid")  # a moved grid still counts as done
    overrides = [*TINY, f"data.root={experiment.parent / 'prepared'}"]
    again = run_grid(None, overrides, ["supervised"], [0, 1], tmp_path / "grid", report=False)
    assert again["missing"] == [] and len(again["rows"]) == 1
    with pytest.raises(ClccError, match=r"supervised-sel0: this run was made with another "
                       r"config \(differs in optim.lr, train.epochs\).*--overwrite"):
        run_grid(None, [*overrides, "optim.lr=0.5", "train.epochs=1"], ["supervised"], [0, 1],
                 tmp_path / "grid", report=False)
    assert (tmp_path / "grid" / "supervised-sel0" / "results.json").exists()  # untouched
    fresh = run_grid(None, [*overrides, "optim.lr=0.5", "train.epochs=1"], ["supervised"], [0],
                     tmp_path / "grid", report=False, overwrite=True, poll_s=0.2)
    assert fresh["missing"] == []
    saved = json.loads((tmp_path / "grid" / "supervised-sel0" / "results.json").read_text())
    assert saved["epochs"] == 1


@pytest.mark.slow
def test_time_budget_stops_runs_resumably_and_tables_what_finished(experiment: Path,
                                                                   tmp_path: Path):
    """The budget is read off an injected clock that jumps past it once the CLCC run has
    started: the outcome does not depend on how fast the machine trains."""
    shutil.copytree(experiment, tmp_path / "grid")
    overrides = [*TINY, f"data.root={experiment.parent / 'prepared'}"]
    started = tmp_path / "grid" / "clcc-n2-sel0" / "train.log"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        partial = run_grid(None, overrides,
                           ["supervised", "clcc:n=2"], [0], tmp_path / "grid", report=False,
                           time_budget_s=0.5, poll_s=0.2,
                           clock=lambda: 1000.0 if started.exists() else 0.0)
    assert partial["missing"] == ["clcc-n2-sel0"] and len(partial["rows"]) == 1
    assert "stop  clcc-n2-sel0: time budget spent (resumable)" in printed.getvalue()
    table = json.loads((tmp_path / "grid" / "table.json").read_text())
    assert [r["method"] for r in table["rows"]] == ["supervised"]
    uamt_started = tmp_path / "grid2" / "uamt-sel0" / "train.log"
    with pytest.raises(ClccError, match="no run finished within the time budget"):
        run_grid(None, [*overrides, "train.epochs=40"], ["uamt"], [0], tmp_path / "grid2",
                 report=False, time_budget_s=0.5, poll_s=0.2,
                 clock=lambda: 1000.0 if uamt_started.exists() else 0.0)
    done = run_grid(None, overrides, ["supervised", "clcc:n=2"], [0], tmp_path / "grid",
                    report=False, poll_s=0.2)
    assert done["missing"] == [] and len(done["rows"]) == 2


def test_deadline_starts_only_runs_that_can_finish(tmp_path: Path):
    """The case of the H200 call: runs started near the deadline were stopped at 294/300."""
    clcc, supervised = Variant("clcc:n=2"), Variant("supervised")
    grid = plan_grid(None, [*TINY, "train.epochs=10"], [clcc, supervised], [0, 1], tmp_path,
                     "selections")  # clcc-sel0, supervised-sel0, clcc-sel1, supervised-sel1
    scheduler = _Scheduler(grid, len(grid), None, jobs=2)
    assert scheduler.next_fitting(1.0) is grid[0]  # nothing timed yet: tried, in order
    assert scheduler.next_fitting(1000.0) is grid[1]
    scheduler.durations = {clcc.entry: [600.0], supervised.entry: [100.0]}
    assert scheduler.next_fitting(300.0) is grid[3]  # CLCC needs 600 s: the cheaper run goes
    assert scheduler.todo == [grid[2]] and scheduler.next_fitting(300.0) is None
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        scheduler.run(poll_s=0.01, deadline=time.perf_counter() + 300.0)
    assert "leave clcc-n2-sel1: needs about 00:10:00, 00:04:" in printed.getvalue()
    assert not (tmp_path / "clcc-n2-sel1").exists()  # never started
    half = grid[2][2].run_dir()
    half.mkdir(parents=True)
    (half / "metrics.jsonl").write_text(json.dumps({"epoch": 5}) + "\n")  # 5 of 10 epochs done
    assert scheduler.estimate_s(grid[2]) == pytest.approx(300.0)
    assert scheduler.next_fitting(300.0) is grid[2]


def test_a_run_trained_by_another_experiment_is_left_to_it(tmp_path: Path):
    grid = plan_grid(None, list(TINY), [Variant("supervised")], [0], tmp_path, "methods")
    scheduler = _Scheduler(grid, len(grid), None, jobs=1)
    printed = io.StringIO()
    with locked_elsewhere(grid[0].cfg.run_dir()), contextlib.redirect_stdout(printed):
        scheduler.run(poll_s=0.01, deadline=time.perf_counter() + 60.0)
    assert "busy  supervised-sel0: another process is training it" in printed.getvalue()
    assert scheduler.running == [] and not grid[0].cfg.run_dir().exists()
    assert scheduler.status().startswith("[0/1 runs done")  # not counted as done here
    grid[0].cfg.run_dir().mkdir(parents=True)
    (grid[0].cfg.run_dir() / "results.json").write_text("{}")  # finished by the other one
    scheduler = _Scheduler(grid, len(grid), None, jobs=1)
    with contextlib.redirect_stdout(io.StringIO()):
        scheduler.run(poll_s=0.01, deadline=time.perf_counter() + 60.0)
    assert scheduler.running == [] and not (grid[0].cfg.run_dir() / "train.log").exists()


@pytest.mark.slow
def test_a_zero_time_budget_tables_what_finished_and_trains_nothing(experiment: Path,
                                                                    tmp_path: Path, capsys):
    from clcc.cli import main

    shutil.copytree(experiment, tmp_path / "grid")
    sets = [a for s in [*TINY, f"data.root={experiment.parent / 'prepared'}"]
            for a in ("--set", s)]
    args = ["experiment", "--methods", "supervised clcc:n=2", "--selections", "0", "--output",
            str(tmp_path / "grid"), "--no-report", *sets]
    assert main([*args, "--time-budget", "0"]) == 0
    assert not (tmp_path / "grid" / "clcc-n2-sel0").exists()
    table = json.loads((tmp_path / "grid" / "table.json").read_text())
    assert [r["method"] for r in table["rows"]] == ["supervised"]
    assert main([*args, "--time-budget", "-1"]) == 2
    assert "--time-budget must be 0 (tables only) or more, got -1 minutes" in (
        capsys.readouterr().err)


def test_selection_order_puts_every_method_of_a_selection_first():
    a0, a1, b0, b1 = (PlannedRun(Variant(m), s, None, []) for m, s in
                      [("clcc", 0), ("clcc", 1), ("supervised", 0), ("supervised", 1)])
    grid = [a0, a1, b0, b1]
    assert order_grid(grid, "selections") == [a0, b0, a1, b1]
    assert order_grid(grid, "methods") == grid
    with pytest.raises(ClccError, match="unknown order 'random'"):
        order_grid(grid, "random")


@pytest.mark.slow
def test_report_pairs_every_method_with_the_chosen_reference(experiment: Path, tmp_path: Path):
    from clcc.report.build import build_report

    shutil.copy(experiment / "table.json", tmp_path / "table.json")  # runs stay where they are
    with pytest.raises(ClccError, match=r"no method 'uamt'.*supervised, mean-teacher"):
        build_report(tmp_path, reference="uamt")
    build_report(tmp_path, reference="mean-teacher")
    data = json.loads((tmp_path / "report" / "data.json").read_text())
    default = json.loads((experiment / "report" / "data.json").read_text())
    [pair], [default_pair] = data["comparisons"], default["comparisons"]
    assert (pair["a"], pair["b"]) == ("supervised", "mean-teacher")
    assert (default_pair["a"], default_pair["b"]) == ("mean-teacher", "supervised")
    assert pair["over_selections"]["mean_diff"] == pytest.approx(
        -default_pair["over_selections"]["mean_diff"])
    assert pair["per_selection"] == pytest.approx([-d for d in default_pair["per_selection"]])
    page = (tmp_path / "report" / "index.html").read_text()
    gap_b = re.search(r'<select id="gap-b">.*?</select>', page).group(0)
    assert '<option value="mean-teacher" selected>' in gap_b  # gallery gap: A − reference


def test_grid_refuses_an_unknown_reference_before_training(tmp_path: Path):
    with pytest.raises(ClccError, match="--reference 'urpc' is not one of the methods"):
        run_grid(None, [], ["supervised", "clcc"], [0], tmp_path / "grid", reference="urpc")
    assert not (tmp_path / "grid").exists()


@pytest.mark.slow
def test_report_in_headless_chromium(experiment: Path, tmp_path: Path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_bin):
        pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/test does)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver_bin))
    try:
        driver.set_window_size(1400, 1000)
        driver.get((experiment / "report" / "index.html").as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        assert driver.execute_script("return window.pwned") is None
        rows = json.loads((experiment / "table.json").read_text())["rows"]
        shown = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "#summary td.dice-mean")]
        assert shown == [f"{r['dice']['mean']:.2f} ± {r['dice']['std']:.2f}" for r in rows]
        cases = driver.find_elements(By.CSS_SELECTOR, "#gallery-body td.case")
        assert cases and all(c.text.startswith(CRAFTED) for c in cases)
        images = driver.find_elements(By.CSS_SELECTOR, "#gallery-body img")
        assert all(driver.execute_script("return arguments[0].naturalWidth", i) > 0
                   for i in images[:6])
        Select(driver.find_element(By.ID, "sort-key")).select_by_value("__gap__")
        Select(driver.find_element(By.ID, "sort-order")).select_by_value("desc")
        gap_cells = driver.find_elements(By.CSS_SELECTOR, "#gallery-body td.gap")
        gaps = [float(c.text) for c in gap_cells]
        assert gaps == sorted(gaps, reverse=True)
        Select(driver.find_element(By.ID, "sort-key")).select_by_value("supervised")
        Select(driver.find_element(By.ID, "sort-order")).select_by_value("asc")
        first_dice = [float(r.find_elements(By.CSS_SELECTOR, ".dice")[0].text)
                      for r in driver.find_elements(By.CSS_SELECTOR, "#gallery-body tr")]
        assert first_dice == sorted(first_dice)
        shot = experiment / "report" / "screenshot.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000

        wide = _eight_method_report(experiment, tmp_path / "wide")
        driver.get(wide.as_uri())
        assert driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth")
        widths = driver.execute_script(
            "return [...document.querySelectorAll('#gallery-body img')]"
            ".map(i => i.getBoundingClientRect().width)")
        assert len(widths) > 8 and min(widths) >= 80, min(widths)
        heads = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#gallery th")]
        assert "CLCC+BN\n(Dice)" in heads and any(h.startswith("CLCC (n=4, frozen") for h in heads)
        driver.save_screenshot(str(tmp_path / "wide" / "report" / "screenshot.png"))
        shutil.copy(tmp_path / "wide" / "report" / "screenshot.png",
                    experiment / "report" / "screenshot-8-methods.png")  # kept for a look
    finally:
        driver.quit()


def _eight_method_report(experiment: Path, out: Path) -> Path:
    """A report of 8 methods with long entries, each backed by a copy of a real tiny run (the
    page's layout is what is tested, not the numbers)."""
    from clcc.report.build import build_report

    table = json.loads((experiment / "table.json").read_text())
    base = [r for r in table["runs"] if r["variant"] == "supervised"]
    entries = ["supervised", "CLCC+BN=clcc:n=4,patch_bn=frozen,train.recalibrate_bn=true"] + [
        f"clcc:n=4,patch_bn=frozen,train.recalibrate_bn=true,tau=0.{k}7,stage1=0.{k}3"
        for k in range(1, 7)]
    runs = []
    for k, spec in enumerate(entries):
        variant = Variant(spec)
        for r in base:
            run = out / f"m{k}-sel{r['selection']}"
            shutil.copytree(r["run"], run)
            runs.append({**r, "run": str(run), "variant": variant.entry, "label": variant.label})
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(json.dumps({"rows": summarise_runs(runs), "runs": runs}))
    return build_report(out)


def test_grid_checks_every_entry_before_training(tmp_path: Path):
    with pytest.raises(ClccError, match="method 'clcc' has no parameter 'consistency'"):
        run_grid(None, [], ["supervised", "clcc:consistency=avg"], [0], tmp_path / "grid")
    assert not (tmp_path / "grid").exists()


def test_off_a_terminal_the_grid_prints_progress_once_a_minute(tmp_path: Path, monkeypatch):
    """Into a file or a CI log (stdout not a terminal): a progress line at most every 60 s of
    the (injected) clock, however many epochs pass; start and end lines are not held back."""
    import clcc.experiment as experiment

    grid = plan_grid(None, [*TINY, "train.epochs=20"], [Variant("supervised")], [0], tmp_path,
                     "methods")
    now = [0.0]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        scheduler = _Scheduler(grid, 1, None, jobs=1, clock=lambda: now[0])
    assert scheduler.progress_every_s == 60.0

    class Running:
        def poll(self):
            return None

    run = experiment._Run("supervised", grid[0][2], Running(), io.StringIO(), 0.0, 0, 0)
    done = [0]
    monkeypatch.setattr(experiment, "_done", lambda cfg: done[0])
    with contextlib.redirect_stdout(printed):
        for second in range(0, 150, 10):  # an epoch every 10 s
            now[0], done[0] = float(second), second // 10 + 1
            scheduler.poll(run)
    lines = [line for line in printed.getvalue().splitlines() if ": epoch " in line]
    assert [line.split(": epoch ")[1].split()[0] for line in lines] == ["1/20", "7/20", "13/20"]


def test_the_recalibrated_table_pairs_each_way_by_hand(tmp_path, capsys, monkeypatch):
    """benchmarks/recalibrated_table.py: each checkpoint as the trainer scored it and as `clcc
    evaluate --recalibrate-bn` did, a run whose last weights are its best read once, and the
    paired difference against the reference each way."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "recalibrated_table.py"
    spec = importlib.util.spec_from_file_location("recalibrated_table", path)
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)

    def csv_of(path: Path, dice: list[float]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("case,dice\n" + "".join(f"v{i},{d}\n" for i, d in enumerate(dice)))

    runs, reest = tmp_path / "experiment", tmp_path / "reest"
    for name, best, last, best_re, last_re in (
            ("supervised-sel0", [0.4, 0.6], [0.3, 0.5], [0.5, 0.5], [0.6, 0.6]),
            ("fixmatch-sel0", [0.5, 0.7], None, [0.8, 0.6], [0.7, 0.7])):
        (runs / name).mkdir(parents=True)
        (runs / name / "results.json").write_text("{}")
        csv_of(runs / name / "test_per_image.csv", best)
        if last is not None:
            csv_of(runs / name / "test_last_per_image.csv", last)
        csv_of(reest / f"{name}-best" / "per_image.csv", best_re)
        csv_of(reest / f"{name}-last" / "per_image.csv", last_re)
    monkeypatch.setattr("sys.argv", ["recalibrated_table.py", str(runs), str(reest)])
    table.main()
    out = capsys.readouterr().out
    assert "| supervised-sel0 | 50.00 | 50.00 | 40.00 | 60.00 | — | — |" in out
    # differences 0.1, 0.1 as saved; 0.3, 0.1 re-estimated: every bootstrap mean in [10, 30]
    assert ("| fixmatch-sel0 | 60.00 | 70.00 | 60.00 | 70.00 | +10.00 [+10.00, +10.00] | "
            "+20.00 [+10.00, +30.00] |") in out
