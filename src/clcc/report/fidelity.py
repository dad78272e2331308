"""docs/fidelity.md from side-by-side runs: per method, the authors' code against clcc.

Each run folder (`benchmarks/authors/side_by_side.py collect` copies them into
`evidence/side-by-side/`) holds `run.json` (side, recipe, seed, command, commit, shim changes,
wall time), `summary.json` (clcc's per-volume test metrics of the checkpoint the run chose) and
`validation.csv` (the run's own validation curve); scored with `--recalibrate-bn`, the summary
also holds the test metrics with BatchNorm statistics re-estimated on the training pool. A run
may name a `stage` (a step of an investigation, made with code before a fix): it is listed,
never pooled. Runs of one recipe are grouped by side; the difference authors − clcc gets
Welch's interval over seeds, and the verdict reads "differs" when that interval leaves 0 out,
"same (within ±5)" when it lies inside ±`MARGIN` Dice points (an equivalence margin declared
before the runs), "not decided" when it holds 0 but is wider, and "1 seed on one side: not
decided" (or "1 seed a side") when a side has a single run.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clcc.report.stats import welch_interval


@dataclass(frozen=True)
class SideBySideRun:
    folder: Path
    side: str  # "authors" or "clcc"
    recipe: str
    seed: int
    test_dice: float  # %, mean over the test volumes
    wall_s: float
    curve: list[tuple[int, float]]  # (iteration, validation Dice %)
    record: dict
    recalibrated_dice: float | None = None  # %, BatchNorm re-estimated on the training pool

    @property
    def stage(self) -> str:
        """"" for a run of the code as it stands, else what the run was a step of."""
        return self.record.get("stage", "")

    @property
    def precision(self) -> str:
        """What the run computed in: fp32 for the authors' scripts; for clcc the last
        `train.precision` of its command, else `auto` (bf16 autocast on a CPU with AMX or
        AVX512-BF16, as every CPU of these runs has)."""
        if self.side == "authors":
            return "fp32"
        sets = [c.split("=", 1)[1] for c in self.record.get("command", [])
                if c.startswith("train.precision=")]
        return sets[-1] if sets else "auto"


def read_run(folder: Path) -> SideBySideRun | None:
    """One run folder, or None while it has no test score yet."""
    record_file, summary_file = folder / "run.json", folder / "summary.json"
    if not (record_file.is_file() and summary_file.is_file()):
        return None
    record = json.loads(record_file.read_text())
    summary = json.loads(summary_file.read_text())
    curve = []
    if (folder / "validation.csv").is_file():
        with open(folder / "validation.csv") as f:
            curve = [(int(r["iteration"]), float(r["val_dice"])) for r in csv.DictReader(f)]
    recalibrated = summary.get("recalibrated_bn")
    return SideBySideRun(folder, record["side"], record["recipe"], int(record["seed"]),
                         100 * float(summary["dice"]["mean"]), float(record["wall_s"]), curve,
                         record, 100 * float(recalibrated["dice"]["mean"]) if recalibrated
                         else None)


def read_runs(evidence: Path) -> list[SideBySideRun]:
    runs = [read_run(f) for f in sorted(evidence.iterdir()) if f.is_dir()]
    return [r for r in runs if r is not None]


MARGIN = 5.0
"""Dice points within which two trainings count as the same: an interval that holds 0 but
reaches past it says only that the seeds run so far cannot tell."""


def verdict(authors: list[float], ours: list[float]) -> tuple[dict[str, float], str]:
    interval = welch_interval(authors, ours)
    low, high = interval["ci_low"], interval["ci_high"]
    if np.isnan(low):
        single = "a side" if len(authors) == len(ours) == 1 else "on one side"
        return interval, f"1 seed {single}: not decided"
    if not low <= 0 <= high:
        return interval, "differs"
    if -MARGIN <= low and high <= MARGIN:
        return interval, f"same (within ±{MARGIN:g})"
    return interval, f"not decided (interval wider than ±{MARGIN:g})"


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.2f} (n = 1)"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f} (n = {len(values)})"


def fidelity_rows(runs: list[SideBySideRun], clcc_runs_of: dict[str, str] | None = None,
                  recalibrated: bool = False) -> list[dict[str, str]]:
    """One row per recipe with both sides' test Dice, the difference and the verdict.
    `clcc_runs_of` maps a recipe to another whose clcc runs it shares (two reductions of one
    authors' script, compared with the same clcc method and command); `recalibrated`: the
    figures with BatchNorm re-estimated, of the runs scored so."""
    if recalibrated:
        runs = [r for r in runs if r.recalibrated_dice is not None]
    rows = []
    for recipe in sorted({r.recipe for r in runs if not r.stage}):
        compared = _compared(runs, recipe, clcc_runs_of or {})
        dice = [(r.side, r.recalibrated_dice if recalibrated else r.test_dice) for r in compared]
        authors = [d for side, d in dice if side == "authors"]
        ours = [d for side, d in dice if side == "clcc"]
        if authors and ours:
            interval, said = verdict(authors, ours)
            low, high = interval["ci_low"], interval["ci_high"]
            shown = f"{interval['mean_diff']:+.2f}" + (
                "" if np.isnan(low) else f" [{low:+.2f}, {high:+.2f}]")
        else:
            shown, said = "—", "one side not run yet"
        rows.append({"recipe": recipe, "authors": _mean_sd(authors), "clcc": _mean_sd(ours),
                     "difference": shown, "verdict": said})
    return rows


def _compared(runs: list[SideBySideRun], recipe: str, shared: dict[str, str]
              ) -> list[SideBySideRun]:
    """A recipe's runs of its code as it stands: the authors' of the recipe, and clcc's of
    the recipe whose clcc runs it shares (its own by default); a clcc seed run again in fp32
    counts once, in fp32 (the authors' precision)."""
    ours = shared.get(recipe, recipe)
    fp32 = {r.seed for r in runs if r.side == "clcc" and r.recipe == ours and not r.stage
            and r.precision == "fp32"}
    return [r for r in runs if not r.stage and (
        r.recipe == recipe if r.side == "authors"
        else r.recipe == ours and (r.precision == "fp32" or r.seed not in fp32))]


def curves_figure(runs: list[SideBySideRun], path: Path,
                  clcc_runs_of: dict[str, str] | None = None) -> None:
    """Validation Dice against iteration, one panel per recipe, authors' runs solid and
    clcc's dashed (one line per seed; `clcc_runs_of` as in `fidelity_rows`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipes = sorted({r.recipe for r in runs})
    fig, axes = plt.subplots(1, max(1, len(recipes)), figsize=(4.2 * max(1, len(recipes)), 3.2),
                             squeeze=False)
    for ax, recipe in zip(axes[0], recipes, strict=False):
        for run in (r for r in _compared(runs, recipe, clcc_runs_of or {}) if r.curve):
            its, dice = zip(*run.curve, strict=True)
            style = "-" if run.side == "authors" else "--"
            colour = "tab:blue" if run.side == "authors" else "tab:orange"
            ax.plot(its, dice, style, color=colour, label=f"{run.side} seed {run.seed}")
        ax.set_title(recipe, fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_ylabel("validation Dice (%)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curves_table(runs: list[SideBySideRun], clcc_runs_of: dict[str, str] | None = None) -> str:
    """The figure's curves as text, so the page carries them: per recipe, each pooled run's
    validation Dice (%) at each iteration it validated, the best in bold."""
    lines = ["| recipe | side | seed | validation Dice % at iteration |", "|---|---|---|---|"]
    for recipe in sorted({r.recipe for r in runs if not r.stage}):
        for run in sorted(_compared(runs, recipe, clcc_runs_of or {}),
                          key=lambda r: (r.side, r.seed)):
            best = max((d for _, d in run.curve), default=None)
            points = " · ".join(f"{it}: **{d:.1f}**" if d == best else f"{it}: {d:.1f}"
                                for it, d in run.curve)
            lines.append(f"| {recipe} | {run.side} | {run.seed} | "
                         f"{points or '— (none logged)'} |")
    return "\n".join(lines)


def markdown_table(rows: list[dict[str, str]]) -> str:
    lines = ["| recipe | authors' code: test Dice % | clcc: test Dice % | authors − clcc "
             "[95 % interval over seeds] | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {r['recipe']} | {r['authors']} | {r['clcc']} | {r['difference']} | "
              f"{r['verdict']} |" for r in rows]
    return "\n".join(lines)


def runs_table(runs: list[SideBySideRun]) -> str:
    """Every run: side, seed, stage, precision, test Dice (and with BatchNorm re-estimated,
    where scored so), best validation, wall time."""
    lines = ["| recipe | side | seed | stage | precision | test Dice % | BN re-estimated % | "
             "best validation % | wall (min) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r.recipe, r.side, r.stage, r.seed, r.precision)):
        best = f"{max(d for _, d in r.curve):.2f}" if r.curve else "— (none logged)"
        again = "—" if r.recalibrated_dice is None else f"{r.recalibrated_dice:.2f}"
        lines.append(f"| {r.recipe} | {r.side} | {r.seed} | {r.stage or 'final'} | "
                     f"{r.precision} | {r.test_dice:.2f} | {again} | {best} | "
                     f"{r.wall_s / 60:.1f} |")
    return "\n".join(lines)
