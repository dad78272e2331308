"""Methods × labelled selections → runs → tables (the paper's Tables 1–2) with one command.

A method entry is a registered name, optionally with parameters: `clcc:alpha=0` is CLCC
without the contrastive stage, `clcc:beta=0,patch_bn=frozen` another variant. Each run gets
its own folder and process; finished runs (with `results.json`) are skipped and interrupted ones
resume from `last.pt`, so the whole grid can be stopped and restarted at will. `jobs` runs
several single-threaded trainings side by side, which uses a multi-core CPU better than one
multi-threaded run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import numpy as np
import yaml

from clcc.config import Config, config_differences, load_config
from clcc.engine.logging import read_log
from clcc.engine.run_folder import claim_run_dir, clear_run, is_run
from clcc.entries import Variant
from clcc.errors import ClccError
from clcc.files import claim, is_locked, made_by, mark
from clcc.report.tables import write_tables


class PlannedRun(NamedTuple):
    """One run of a grid: its method entry, labelled selection, config, and the `--set`
    overrides that make that config (its training process's command line)."""

    variant: Variant
    selection: int
    cfg: Config
    sets: list[str]


def run_config(base: Path | None, overrides: list[str], variant: Variant, selection: int,
               output: Path) -> tuple[Config, list[str]]:
    sets = [*overrides, f"method.name={variant.method}", f"data.selection={selection}",
            f"train.output={output}", f"train.name={variant.slug}-sel{selection}"]
    sets += [f"{k if '.' in k else 'method.params.' + k}={json.dumps(v)}"
             for k, v in variant.params.items()]
    return load_config(base, sets), sets


def _fmt(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


def _unit(cfg: Config) -> str:
    """What a run counts: steps when its config gives iterations, else epochs."""
    return "step" if cfg.train.iterations else "epoch"


def _length(cfg: Config) -> int:
    return cfg.train.iterations or cfg.train.epochs


def _done(cfg: Config) -> int:
    """The last epoch (or step) a running run has logged (0 before the first)."""
    records = read_log(cfg.run_dir() / "metrics.jsonl")
    return int(records[-1].get(_unit(cfg), 0)) if records else 0


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


def _results(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "results.json"
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except ValueError as err:
        raise ClccError(f"{path}: unreadable ({err}); remove it to train the run again") from err


def _refuse_stale(grid: list[PlannedRun], overwrite: bool) -> None:
    """A run folder made with another config would mix its numbers into this table: refuse it,
    naming the keys, or (with `overwrite`) delete it so that it trains anew."""
    from clcc.data.prepare import DataIdentity

    for cfg in (run.cfg for run in grid):
        saved_path = cfg.run_dir() / "config.yaml"
        if not saved_path.exists():
            continue
        diffs = config_differences(yaml.safe_load(saved_path.read_text()) or {}, cfg)
        done = _results(cfg.run_dir())
        if done and not DataIdentity(cfg.data.root, cfg.data.size, cfg.data.selection,
                                     cfg.data.resample).matches(done):
            diffs.append(f"the prepared data (re-prepared under {cfg.data.root})")
        if not diffs:
            continue
        if not overwrite:
            raise ClccError(
                f"{cfg.run_dir()}: this run was made with another config (differs in "
                f"{', '.join(diffs)}); choose another --output or pass --overwrite to retrain it"
            )
        clear_run(cfg.run_dir())


def order_grid(grid: list[PlannedRun], order: str) -> list[PlannedRun]:
    """`methods`: every selection of the first method, then the next method; `selections`:
    every method on the first selection, then the next (a deadline then leaves whole rows of
    one selection rather than some methods with none)."""
    if order == "methods":
        return grid
    if order != "selections":
        raise ClccError(f"unknown order {order!r}; choose methods or selections")
    return sorted(grid, key=lambda run: run.selection)  # stable: methods keep their order


def _threads_per_run(cfg: Config, jobs: int) -> int:
    """CPU runs side by side get one thread each; GPU runs share the cores, as their threads
    only feed the device (batch gather, validation metrics)."""
    import torch

    on_gpu = cfg.train.device.startswith("cuda") or (
        cfg.train.device == "auto" and torch.cuda.is_available()
    )
    return max(1, (os.cpu_count() or 1) // jobs) if on_gpu else 1


@dataclass
class _Run:
    """A training process of the grid and what its progress lines need."""

    entry: str  # the method entry, whose finished runs time the next ones
    cfg: Config
    proc: subprocess.Popen
    log: TextIO
    started: float
    from_epoch: int  # where it (re)started
    shown: int  # the last epoch reported


PROGRESS_EVERY_S = 60.0
"""Seconds between progress lines when the output is not a terminal."""


def run_fits(estimate_s: float | None, left_s: float) -> bool:
    """Whether a run expected to take `estimate_s` (None: not timed yet, so tried) can finish in
    the `left_s` seconds before the deadline; one that cannot would only be stopped there."""
    return estimate_s is None or estimate_s <= left_s


class _Scheduler:
    """Runs `todo` as training processes, `jobs` at a time, printing each epoch and the time
    left. Before the deadline it starts only runs that its finished runs of the same method say
    can finish in time; at the deadline it stops the running ones (they resume from last.pt)."""

    def __init__(self, todo: list[PlannedRun], total: int, config: Path | None, jobs: int,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.todo, self.total, self.config, self.jobs = list(todo), total, config, jobs
        self.clock = clock  # seconds; tests give a clock of their own
        # progress lines: every epoch on a terminal; into a file or a CI log, one a minute
        # (as tqdm's mininterval), besides each run's start and end
        self.progress_every_s = 0.0 if sys.stdout.isatty() else PROGRESS_EVERY_S
        self.progress_shown = -math.inf
        self.running: list[_Run] = []
        self.others = 0  # runs left to another process training them
        self.durations: dict[str, list[float]] = {}  # whole-run seconds of finished runs
        self.started = self.clock()
        self.threads = _threads_per_run(todo[0].cfg, jobs) if todo and jobs > 1 else 0

    def estimate_s(self, run: PlannedRun) -> float | None:
        """Seconds `run` should take: the mean of its method entry's finished runs, less what
        the run has already done."""
        timed = self.durations.get(run.variant.entry)
        if not timed:
            return None
        return float(np.mean(timed)) * (_length(run.cfg) - _done(run.cfg)) / _length(run.cfg)

    def next_fitting(self, left_s: float) -> PlannedRun | None:
        """The first waiting run that can finish in `left_s` (it leaves the queue), else None."""
        for run in self.todo:
            if run_fits(self.estimate_s(run), left_s):
                self.todo.remove(run)
                return run
        return None

    def run(self, poll_s: float, deadline: float) -> None:
        """Start, watch and finish the runs; a failed run or Ctrl-C ends the others it started
        (resumable from their last.pt) before the error goes up."""
        try:
            self._run(poll_s, deadline)
        except BaseException:
            self.stop_all("ended with the grid")
            raise

    def _run(self, poll_s: float, deadline: float) -> None:
        while self.todo or self.running:
            now = self.clock()
            if now > deadline:
                self.stop_all("time budget spent")
                return
            while len(self.running) < self.jobs and (
                    planned := self.next_fitting(deadline - now)):
                self.start(planned)
            if not self.running:
                self.leave_unfitting(deadline - now)
                return
            time.sleep(poll_s)
            for run in list(self.running):
                self.poll(run)

    def leave_unfitting(self, left_s: float) -> None:
        for run in self.todo:
            print(f"  leave {run.cfg.run_dir().name}: needs about {_fmt(self.estimate_s(run))}, "
                  f"{_fmt(max(0.0, left_s))} left (a later call runs it)", flush=True)

    def start(self, planned: PlannedRun) -> None:
        cfg = planned.cfg
        if (cfg.run_dir() / "results.json").exists() or is_locked(cfg.run_dir()):
            print(f"  busy  {cfg.run_dir().name}: another process is training it or has "
                  f"finished it; left to it", flush=True)
            self.others += 1
            return
        cfg.run_dir().mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "clcc", "train", "--resume", "--set", "train.progress=false"]
        cmd += ["--config", str(self.config)] if self.config is not None else []
        cmd += [a for s in planned.sets for a in ("--set", s)]
        env = dict(os.environ)
        if self.threads:
            cmd += ["--set", f"train.threads={self.threads}"]
            env["OMP_NUM_THREADS"] = str(self.threads)
        log = open(cfg.run_dir() / "train.log", "a")
        epoch = _done(cfg)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.running.append(_Run(planned.variant.entry, cfg, proc, log, self.clock(), epoch,
                                 epoch))
        print(f"  start {cfg.run_dir().name}", flush=True)

    def poll(self, run: _Run) -> None:
        name = run.cfg.run_dir().name
        if run.proc.poll() is None:
            epoch = _done(run.cfg)
            if epoch > run.shown:
                run.shown = epoch
                if self.clock() - self.progress_shown >= self.progress_every_s:
                    self.progress_shown = self.clock()
                    print(f"  {name}: {_unit(run.cfg)} {epoch}/{_length(run.cfg)}  "
                          f"{self.status()}", flush=True)
            return
        self.running.remove(run)
        run.log.close()
        if run.proc.returncode != 0:
            raise ClccError(f"run {run.cfg.run_dir()} failed; see "
                            f"{run.cfg.run_dir() / 'train.log'}")
        took = self.clock() - run.started
        if run.from_epoch < _length(run.cfg):
            self.durations.setdefault(run.entry, []).append(
                whole_run_s(took, run.from_epoch, _length(run.cfg)))
        memory = json.loads((run.cfg.run_dir() / "results.json").read_text()).get(
            "peak_gpu_memory_gib")
        gpu = f", peak GPU memory {memory:.2f} GiB" if memory is not None else ""
        print(f"  done  {name} in {_fmt(took)}{gpu}  {self.status()}", flush=True)

    def stop_all(self, why: str) -> None:
        for run in self.running:
            run.proc.terminate()
            run.proc.wait()
            run.log.close()
            print(f"  stop  {run.cfg.run_dir().name}: {why} (resumable)", flush=True)
        self.running = []

    def status(self) -> str:
        """Runs done / total, elapsed, and the time left from each run's own pace."""
        now = self.clock()
        lefts = [run_left_s(now - r.started, r.from_epoch, r.shown, _length(r.cfg))
                 for r in self.running]
        projected = [now - r.started + left for r, left in zip(self.running, lefts, strict=True)
                     if left is not None]  # whole-run times of the running runs
        typical = [d for runs in self.durations.values() for d in runs] or projected
        left = time_left_s(lefts, len(self.todo), float(np.mean(typical)) if typical else None,
                           self.jobs)
        done = self.total - len(self.todo) - len(self.running) - self.others
        return (f"[{done}/{self.total} runs done, elapsed {_fmt(now - self.started)}, "
                f"about {_fmt(left)} left]")


def plan_grid(config: Path | None, overrides: list[str], variants: list[Variant],
              selections: list[int], output: Path, order: str) -> list[PlannedRun]:
    """Every run of the grid, in the order they should run;
    every entry's method parameters are checked first (before any run starts)."""
    from clcc.engine.trainer import with_resolved_parameters  # (torch: when a grid runs)
    from clcc.methods import build_method, check_parameters

    repeated = sorted({v.entry for v in variants if [w.entry for w in variants].count(v.entry) > 1}
                      | {v.spec for v in variants if [w.slug for w in variants].count(v.slug) > 1})
    if repeated or len(set(selections)) < len(selections):
        raise ClccError(f"--methods/--selections name {', '.join(repeated) or 'a selection'} "
                        "twice; each once")
    for variant in variants:
        check_parameters(variant.method,
                         {k: v for k, v in variant.params.items() if "." not in k})
    grid = []
    for variant in variants:
        for selection in selections:
            cfg, sets = run_config(config, overrides, variant, selection, output)
            grid.append(PlannedRun(variant, selection, with_resolved_parameters(cfg), sets))
        # the whole method once, as its first run will build it: parameters that do not fit
        # the image size or the network end the call here, before any run starts
        build_method(cfg.method.name, cfg.input_size(), cfg.method.params, cfg.loss.supervised,
                     widths=cfg.model.widths, dropout=cfg.model.dropout,
                     architecture=cfg.model.name, spatial_dims=cfg.model.spatial_dims)
    return order_grid(grid, order)


def check_data(grid: list[PlannedRun]) -> None:
    """Every run's data.root is a prepared set holding its selection (before any run starts,
    rather than as the first run's failure)."""
    from clcc.data.prepare import is_prepared

    selections = sorted({run.selection for run in grid})
    for root, selection in sorted({(run.cfg.data.root, run.selection) for run in grid}):
        if not is_prepared(Path(root)):
            raise ClccError(f"{root}: not a prepared data set (data.root); run `clcc data "
                            "prepare` first, or set data.root")
        if not (Path(root) / "splits" / f"labelled-{selection}.txt").is_file():
            raise ClccError(f"{root}: selection {selection} was not prepared; prepare the set "
                            f"with --selections {','.join(map(str, selections))}")


def is_grid(folder: Path) -> bool:
    """An experiment folder made before it carried its marker: tables, or run folders."""
    folder = Path(folder)
    return (folder / "table.json").is_file() or any(is_run(p) for p in folder.iterdir()
                                                     if p.is_dir())


def claim_grid(output: Path, grid: list[PlannedRun]) -> None:
    """Refuse, before any run starts, an output folder or run folder that is not this
    command's own (or lies in the prepared data), then mark the output as a grid."""
    roots = {Path(run.cfg.data.root) for run in grid}
    claim(output, "experiment", inputs=roots, ours=is_grid)
    for run in grid:
        claim_run_dir(run.cfg.run_dir(), roots, resume=True, overwrite=False)
    if made_by(output) != "experiment":
        mark(output, "experiment", listing=False)


def _reference_entry(reference: str | None, variants: list[Variant]) -> str | None:
    """The entry `reference` names (as written, as an entry or by its label)."""
    if reference is None:
        return None
    for v in variants:
        if reference in (v.spec, v.entry, v.label):
            return v.entry
    raise ClccError(f"--reference {reference!r} is not one of the methods: "
                    f"{' '.join(v.spec for v in variants)}")


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
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Train every (method, selection) pair not yet finished, then write the tables and
    (with `report`) the figures and HTML report.

    With `time_budget_s`, a run starts only if it can finish before the budget is spent (timed
    by the finished runs of its method) and the runs still going are stopped then (they resume
    from their last.pt next time); the tables hold the runs finished. `clock` (seconds) is
    what the budget is measured by.
    """
    if jobs < 1:
        raise ClccError(f"--jobs must be at least 1, got {jobs}")
    if not methods:
        raise ClccError("--methods names no method; give one or more, e.g. "
                        "--methods 'supervised clcc:n=4'")
    if time_budget_s is not None and time_budget_s < 0:
        raise ClccError(f"--time-budget must be 0 (tables only) or more, got "
                        f"{time_budget_s / 60:g} minutes")
    variants = [Variant(m) for m in methods]
    reference = _reference_entry(reference, variants)
    grid = plan_grid(config, overrides, variants, selections, output, order)
    check_data(grid)
    claim_grid(output, grid)
    _refuse_stale(grid, overwrite)
    todo = [run for run in grid if not (run.cfg.run_dir() / "results.json").exists()]
    print(f"experiment: {len(grid)} runs, {len(grid) - len(todo)} already done → {output}")
    scheduler = _Scheduler(todo, len(grid), config, jobs, clock)
    budget = time_budget_s if time_budget_s is not None else float("inf")
    scheduler.run(poll_s, deadline=scheduler.started + budget)
    return tabulate(grid, output, reference, report)


def tabulate(grid: list[PlannedRun], output: Path, reference: str | None, report: bool
             ) -> dict[str, Any]:
    """Tables of the finished runs of `grid` (and the report, when every run has finished)."""
    done = [run for run in grid if (run.cfg.run_dir() / "results.json").exists()]
    missing = [run.cfg.run_dir().name for run in grid if run not in done]
    if not done:
        raise ClccError(f"{output}: no run finished within the time budget; rerun to resume")
    results = [json.loads((run.cfg.run_dir() / "results.json").read_text()) for run in done]
    for r, run in zip(results, done, strict=True):
        r["variant"], r["label"] = run.variant.entry, run.variant.label
    summary = write_tables(results, output, reference)
    if missing:
        print(f"experiment: {len(missing)} run(s) not finished, not in the tables (rerun the "
              f"same command to resume them): {' '.join(missing)}")
    elif report:
        from clcc.report.build import build_report

        print(f"report: {build_report(output, reference=reference)}")
    return {**summary, "missing": missing}
