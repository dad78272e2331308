"""Methods × labelled selections → runs → tables (the paper's Tables 1–2) with one command.

A method entry is a registered name, optionally with parameters: `clcc:alpha=0` is CLCC
without the contrastive stage, `clcc:beta=0,patch_bn=frozen` another variant. Each run gets
its own folder and process; finished runs (with `results.json`) are skipped and interrupted ones
resume from `last.pt`, so the whole grid can be stopped and restarted at will. `jobs` runs
several single-threaded trainings side by side, which uses a multi-core CPU better than one
multi-threaded run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from clcc.config import Config, config_differences, load_config
from clcc.engine.logging import read_log
from clcc.entries import Variant, label_of
from clcc.errors import ClccError
from clcc.files import write_json, write_text
from clcc.report.compare import compare_with_reference, comparison_lines

TABLE_METRICS = ("mae", "dice", "iou")


def run_config(base: Path | None, overrides: list[str], variant: Variant, selection: int,
               output: Path) -> tuple[Config, list[str]]:
    sets = [*overrides, f"method.name={variant.method}", f"data.selection={selection}",
            f"train.output={output}", f"train.name={variant.slug}-sel{selection}"]
    sets += [f"{k if '.' in k else 'method.params.' + k}={json.dumps(v)}"
             for k, v in variant.params.items()]
    return load_config(base, sets), sets


def _fmt(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


def _last_epoch(run_dir: Path) -> int:
    """The last epoch a running run has logged (0 before the first)."""
    records = read_log(run_dir / "metrics.jsonl")
    return int(records[-1]["epoch"]) if records else 0


def whole_run_s(took: float, start_epoch: int, epochs: int) -> float:
    """Seconds a whole run would take, from one that resumed at `start_epoch` and took `took`
    seconds to finish (time-left estimates would otherwise count a resumed run as whole)."""
    return took * epochs / (epochs - start_epoch)


def run_left_s(elapsed: float, start_epoch: int, epoch: int, epochs: int) -> float | None:
    """Seconds a running run still needs, from its own pace since it (re)started; None before
    its first epoch. Each run has its own pace: methods differ several-fold in cost."""
    if epoch <= start_epoch:
        return None
    return elapsed * (epochs - epoch) / (epoch - start_epoch)


def time_left_s(running: list[float | None], waiting: int, run_s: float | None,
                jobs: int) -> float:
    """Seconds until the grid ends: the running runs' own estimates (`run_s` for one not yet
    timed), then the waiting runs at `run_s` each, shared over `jobs` slots; never less than
    the longest running run."""
    typical = run_s if run_s is not None else max([r for r in running if r is not None],
                                                  default=0.0)
    lefts = [typical if r is None else r for r in running]
    return max(max(lefts, default=0.0), (sum(lefts) + waiting * typical) / max(1, jobs))


def _refuse_stale(grid: list[tuple[Variant, int, Config, list[str]]], overwrite: bool) -> None:
    """A run folder made with another config would mix its numbers into this table: refuse it,
    naming the keys, or (with `overwrite`) delete it so that it trains anew."""
    for _, _, cfg, _ in grid:
        saved_path = cfg.run_dir() / "config.yaml"
        if not saved_path.exists():
            continue
        diffs = config_differences(yaml.safe_load(saved_path.read_text()) or {}, cfg)
        if not diffs:
            continue
        if not overwrite:
            raise ClccError(
                f"{cfg.run_dir()}: this run was made with another config (differs in "
                f"{', '.join(diffs)}); choose another --output or pass --overwrite to retrain it"
            )
        shutil.rmtree(cfg.run_dir())


def order_grid(grid: list, order: str) -> list:
    """`methods`: every selection of the first method, then the next method; `selections`:
    every method on the first selection, then the next (a deadline then leaves whole rows of
    one selection rather than some methods with none)."""
    if order == "methods":
        return grid
    if order != "selections":
        raise ClccError(f"unknown order {order!r}; choose methods or selections")
    return sorted(grid, key=lambda g: g[1])  # stable: methods keep their order


def _threads_per_run(cfg: Config, jobs: int) -> int:
    """CPU runs side by side get one thread each; GPU runs share the cores, as their threads
    only feed the device (batch gather, validation metrics)."""
    import torch

    on_gpu = cfg.train.device.startswith("cuda") or (
        cfg.train.device == "auto" and torch.cuda.is_available()
    )
    return max(1, (os.cpu_count() or 1) // jobs) if on_gpu else 1


def run_grid(
    config: Path | None,
    overrides: list[str],
    methods: list[str],
    selections: list[int],
    output: Path,
    jobs: int = 1,
    report: bool = True,
    poll_s: float = 2.0,
    reference: str | None = None,
    overwrite: bool = False,
    time_budget_s: float | None = None,
    order: str = "methods",
) -> dict[str, Any]:
    """Train every (method, selection) pair not yet finished, then write the tables and
    (with `report`) the figures and HTML report.

    With `time_budget_s`, no run starts after the budget is spent and the runs still going are
    stopped then (they resume from their last.pt next time); the tables hold the runs finished.
    """
    variants = [Variant(m) for m in methods]
    if reference is not None:
        matches = [v.entry for v in variants if reference in (v.spec, v.entry, v.label)]
        if not matches:
            raise ClccError(
                f"--reference {reference!r} is not one of the methods: {' '.join(methods)}"
            )
        reference = matches[0]
    if jobs < 1:
        raise ClccError(f"--jobs must be at least 1, got {jobs}")
    from clcc.methods import check_parameters  # (imports torch: only when a grid runs)

    for variant in variants:  # a bad entry stops here, not a third of the way into its run
        check_parameters(variant.method,
                         {k: v for k, v in variant.params.items() if "." not in k})
    grid = []
    for variant in variants:
        for selection in selections:
            cfg, sets = run_config(config, overrides, variant, selection, output)
            grid.append((variant, selection, cfg, sets))
    grid = order_grid(grid, order)
    _refuse_stale(grid, overwrite)
    todo = [g for g in grid if not (g[2].run_dir() / "results.json").exists()]
    print(f"experiment: {len(grid)} runs, {len(grid) - len(todo)} already done → {output}")
    started, durations = time.perf_counter(), []
    deadline = started + time_budget_s if time_budget_s is not None else float("inf")
    running: list[tuple[subprocess.Popen, Any, float, Any]] = []
    shown: dict[Path, int] = {}  # last epoch reported per running run
    base: dict[Path, int] = {}  # the epoch a run started (resumed) from

    def status() -> str:
        """Runs done / total, elapsed, and the time left from each run's own pace."""
        now = time.perf_counter()
        lefts = [run_left_s(now - t0, base[c.run_dir()], shown[c.run_dir()], c.train.epochs)
                 for _, c, t0, _ in running]
        projected = [now - t0 + left for (_, _, t0, _), left in zip(running, lefts, strict=True)
                     if left is not None]  # whole-run times of the running runs, if no run ended
        typical = durations or projected
        left = time_left_s(lefts, len(todo), float(np.mean(typical)) if typical else None, jobs)
        return (f"[{len(grid) - len(todo) - len(running)}/{len(grid)} runs done, "
                f"elapsed {_fmt(now - started)}, about {_fmt(left)} left]")

    threads = _threads_per_run(grid[0][2], jobs) if jobs > 1 else 0
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else dict(os.environ)
    while todo or running:
        if time.perf_counter() > deadline:
            for proc, cfg, _, log in running:
                proc.terminate()
                proc.wait()
                log.close()
                print(f"  stop  {cfg.run_dir().name}: time budget spent (resumable)", flush=True)
            break
        while todo and len(running) < jobs:
            variant, selection, cfg, sets = todo.pop(0)
            cfg.run_dir().mkdir(parents=True, exist_ok=True)
            base[cfg.run_dir()] = shown[cfg.run_dir()] = _last_epoch(cfg.run_dir())
            log = open(cfg.run_dir() / "train.log", "a")
            cmd = [sys.executable, "-m", "clcc", "train", "--resume", "--set",
                   "train.progress=false"]
            if config is not None:
                cmd += ["--config", str(config)]
            for s in sets:
                cmd += ["--set", s]
            if threads:
                cmd += ["--set", f"train.threads={threads}"]
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                            cfg, time.perf_counter(), log))
            print(f"  start {cfg.run_dir().name}", flush=True)
        time.sleep(poll_s)
        for item in list(running):
            proc, cfg, t0, log = item
            if proc.poll() is None:
                epoch = _last_epoch(cfg.run_dir())
                if epoch > shown.get(cfg.run_dir(), 0):
                    shown[cfg.run_dir()] = epoch
                    print(f"  {cfg.run_dir().name}: epoch {epoch}/{cfg.train.epochs}  "
                          f"{status()}", flush=True)
                continue
            running.remove(item)
            log.close()
            if proc.returncode != 0:
                raise ClccError(f"run {cfg.run_dir()} failed; see {cfg.run_dir() / 'train.log'}")
            took = time.perf_counter() - t0
            if base[cfg.run_dir()] < cfg.train.epochs:
                durations.append(whole_run_s(took, base[cfg.run_dir()], cfg.train.epochs))
            print(f"  done  {cfg.run_dir().name} in {_fmt(took)}  {status()}", flush=True)
    done = [g for g in grid if (g[2].run_dir() / "results.json").exists()]
    missing = [g[2].run_dir().name for g in grid if g not in done]
    if not done:
        raise ClccError(f"{output}: no run finished within the time budget; rerun to resume")
    results = [json.loads((g[2].run_dir() / "results.json").read_text()) for g in done]
    for r, g in zip(results, done, strict=True):
        r["variant"], r["label"] = g[0].entry, g[0].label
    summary = write_tables(results, output, reference)
    if missing:
        print(f"experiment: {len(missing)} run(s) not finished, not in the tables (rerun the "
              f"same command to resume them): {' '.join(missing)}")
    elif report:
        from clcc.report.build import build_report

        print(f"report: {build_report(output, reference=reference)}")
    return {**summary, "missing": missing}


def summarise_runs(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant: mean ± std over selections of each test metric (×100), plus per selection."""
    rows = []
    for variant in dict.fromkeys(r["variant"] for r in results):
        runs = sorted((r for r in results if r["variant"] == variant),
                      key=lambda r: r["selection"])
        row: dict[str, Any] = {"method": variant, "label": label_of(runs[0]),
                               "selections": [r["selection"] for r in runs]}
        for metric in TABLE_METRICS:
            values = [100 * r["test"][metric]["mean"] for r in runs]
            row[metric] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                           "per_selection": values}
        row["val_dice"] = [100 * r["val"]["dice"]["mean"] for r in runs]
        rows.append(row)
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| method | MAE | Dice | mIoU | Dice per selection | val Dice per selection | entry |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        per = " / ".join(f"{v:.2f}" for v in row["dice"]["per_selection"])
        val = " / ".join(f"{v:.2f}" for v in row["val_dice"])
        lines.append(
            f"| {row['label']} | {row['mae']['mean']:.2f} ± {row['mae']['std']:.2f} | "
            f"{row['dice']['mean']:.2f} ± {row['dice']['std']:.2f} | "
            f"{row['iou']['mean']:.2f} ± {row['iou']['std']:.2f} | {per} | {val} | "
            f"`{row['method']}` |"
        )
    return "\n".join(lines) + "\n"


def write_tables(
    results: list[dict[str, Any]], output: Path, reference: str | None = None
) -> dict[str, Any]:
    """table.md/.csv/.json: the metrics per method, and (with two methods or more) each one
    against `reference` (default: the first) per selection, over selections and over images."""
    rows = summarise_runs(results)
    reference = reference or rows[0]["method"]
    comparisons = compare_with_reference(results, reference)
    write_json(output / "table.json", {"rows": rows, "comparisons": comparisons, "runs": results})
    paired = ("\nPaired test Dice (×100) against " + reference + ":\n\n"
              + "\n".join(comparison_lines(comparisons)) + "\n") if comparisons else ""
    write_text(output / "table.md", markdown_table(rows) + paired)
    lines = io.StringIO()
    writer = csv.writer(lines, lineterminator="\n")  # entries hold commas: quoted
    writer.writerow(["method", "label", "selection", "mae", "dice", "iou", "val_dice"])
    for r in results:
        t = r["test"]
        writer.writerow([r["variant"], label_of(r), r["selection"],
                         *(f"{100 * t[m]['mean']:.4f}" for m in TABLE_METRICS),
                         f"{100 * r['val']['dice']['mean']:.4f}"])
    write_text(output / "table.csv", lines.getvalue())
    print(markdown_table(rows) + paired)
    return {"rows": rows, "comparisons": comparisons}
