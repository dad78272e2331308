"""Build the report of an experiment folder written by `clcc experiment`.

Everything comes from the runs on disk: `table.json`, each run's `metrics.jsonl`,
`test_per_image.csv` and `best.pt` (re-run on the test images for masks and overlays). The
gallery and the qualitative figure show one labelled selection (the smallest number), on which
every method can be compared image by image; the paired statistics come per selection, over
selections and over test images (`clcc.report.compare`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clcc.config import load_config
from clcc.data.prepare import PreparedData
from clcc.engine.evaluate import predict_labels
from clcc.engine.logging import read_log
from clcc.engine.predict import load_trained_model, overlay
from clcc.entries import label_of
from clcc.errors import ClccError
from clcc.files import OUTPUT_MARKER, atomic_path, claim, mark, staged_into, write_json, write_text
from clcc.report.compare import compare_with_reference, per_image_dice
from clcc.report.figures import qualitative_figure, training_curves
from clcc.report.html import render_report


def _save_asset(array: np.ndarray, report: Path, name: str) -> str:
    """Write report/assets/<name> and return its address relative to the page."""
    path = report / "assets" / name
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return f"assets/{name}"


def figure_cases(dice: dict[str, np.ndarray], names: list[str], count: int) -> list[int]:
    """Half the rows where the methods disagree most (std of Dice), half drawn with seed 0."""
    spread = np.std(np.stack(list(dice.values())), axis=0)
    hard = [int(i) for i in np.argsort(-spread, kind="stable")[: count - count // 2]]
    rest = [i for i in range(len(names)) if i not in hard]
    rng = np.random.default_rng(0)
    drawn = rng.choice(rest, size=min(count // 2, len(rest)), replace=False).tolist()
    return hard + sorted(int(i) for i in drawn)


def build_report(experiment: Path, figure_rows: int = 6, reference: str | None = None) -> Path:
    """Figures, data.json and index.html under <experiment>/report; every method is paired
    with `reference` (default: the experiment's first method)."""
    experiment = Path(experiment)
    table_path = experiment / "table.json"
    if not table_path.exists():
        raise ClccError(f"{experiment}: no table.json; run `clcc experiment` first")
    try:
        table = json.loads(table_path.read_text())
        runs = table["runs"]
    except (ValueError, KeyError, TypeError) as err:
        raise ClccError(f"{table_path}: unreadable ({err}); rebuild it with `clcc experiment "
                        "... --time-budget 0`") from err
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    labels = {r["variant"]: label_of(r) for r in runs}
    if reference is None:
        reference = variants[0]
    reference = next((v for v in variants if reference in (v, labels[v])), None) or reference
    if reference not in variants:
        raise ClccError(f"{table_path}: no method {reference!r} to compare with; the "
                        f"experiment has {', '.join(variants)}")
    shown = min(r["selection"] for r in runs)
    final = experiment / "report"

    claim(final, "report", ours=lambda p: (p / "index.html").is_file())
    with staged_into(final, last=OUTPUT_MARKER) as out:
        curves: dict[str, dict[int, list]] = {}
        for r in runs:
            curves.setdefault(labels[r["variant"]], {})[r["selection"]] = read_log(
                Path(r["run"]) / "metrics.jsonl"
            )
        training_curves(curves, out / "curves.png")

        comparisons = compare_with_reference(runs, reference)

        first = next(r for r in runs if r["selection"] == shown)
        cfg = load_config(Path(first["run"]) / "config.yaml")  # the run's resolved config
        data = PreparedData.open(Path(cfg.data.root), cfg.data.size, cfg.data.resample)
        names = data.subset("test")
        idx = data.middle_slices(names)  # a volume is shown by its middle slice
        images, truths = np.asarray(data.images[idx]), np.asarray(data.masks[idx])
        shown_images = np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images
        top = data.labels.classes - 1  # label maps shown in grey, the last class white
        masks: dict[str, np.ndarray] = {}
        shown_dice: dict[str, np.ndarray] = {}
        for v in variants:
            run = next(r for r in runs if r["variant"] == v and r["selection"] == shown)
            _, model, runtime = load_trained_model(Path(run["run"]) / "best.pt", "cpu")
            masks[v] = predict_labels(model, images, runtime)
            by_case = per_image_dice(Path(run["run"]))
            shown_dice[v] = np.array([by_case[n] for n in names])

        rows = figure_cases(shown_dice, names, min(figure_rows, len(names)))
        qualitative_figure(shown_images[rows] / 255.0, truths[rows] / top,
                           {labels[v]: masks[v][rows] / top for v in variants},
                           [names[i] for i in rows], out / "qualitative.png")

        gallery = []
        for i, name in enumerate(names):
            entry: dict[str, Any] = {
                "case": name,  # shown with textContent; asset names never contain it
                "image": _save_asset(shown_images[i], out, f"{i:05d}-image.png"),
                "truth": _save_asset(overlay(shown_images[i], truths[i]), out,
                                     f"{i:05d}-truth.png"),
                "overlays": {}, "dice": {},
            }
            for k, v in enumerate(variants):
                entry["overlays"][v] = _save_asset(overlay(shown_images[i], masks[v][i]), out,
                                                   f"{i:05d}-m{k}.png")
                entry["dice"][v] = round(100 * float(shown_dice[v][i]), 2)
            gallery.append(entry)
        page = render_report(
            title=f"clcc experiment: {experiment.name}", rows=table["rows"],
            comparisons=comparisons, gallery=gallery, methods=variants, labels=labels,
            selection=shown, reference=reference, classes=data.labels.names,
        )
        write_json(out / "data.json", {"rows": table["rows"], "comparisons": comparisons})
        write_text(out / "index.html", page)
        mark(out, "report")
    return final / "index.html"
