"""The tables of an experiment: per method, each test metric's mean ± sd over the labelled
selections (per image as the CLCC paper reports, or per 3-D volume as the ACDC and LA papers
do), and each method against a reference; written as table.md, table.csv and table.json."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from clcc.entries import label_of
from clcc.files import write_json, write_text
from clcc.report.compare import compare_with_reference, comparison_lines, per_class_text

IMAGE_COLUMNS = (("mae", "MAE", 100), ("dice", "Dice", 100), ("iou", "mIoU", 100))
VOLUME_COLUMNS = (("dice", "Dice", 100), ("iou", "Jaccard", 100), ("hd95", "HD95 (voxels)", 1),
                  ("asd", "ASD (voxels)", 1))
"""(metric, heading, scale) of a table: per image as the CLCC paper reports (×100), or per 3-D
volume as the ACDC papers report (Dice and Jaccard ×100, distances in voxels)."""


def table_columns(results: list[dict[str, Any]]) -> tuple[tuple[str, str, int], ...]:
    return VOLUME_COLUMNS if "asd" in results[0]["test"] else IMAGE_COLUMNS


def summarise_runs(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant: mean ± sample std (n − 1, what readers assume; 0 for one selection) over
    selections of each test metric (`table_columns`), plus per selection."""
    rows = []
    columns = table_columns(results)
    for variant in dict.fromkeys(r["variant"] for r in results):
        runs = sorted((r for r in results if r["variant"] == variant),
                      key=lambda r: r["selection"])
        row: dict[str, Any] = {"method": variant, "label": label_of(runs[0]),
                               "selections": [r["selection"] for r in runs]}
        row["columns"] = [[metric, heading] for metric, heading, _ in columns]
        for metric, _, scale in columns:
            values = [scale * r["test"][metric]["mean"] for r in runs]
            std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            row[metric] = {"mean": float(np.mean(values)), "std": std, "per_selection": values}
        row["val_dice"] = [100 * r["val"]["dice"]["mean"] for r in runs]
        classes = [k.removeprefix("dice_") for k in runs[0]["test"] if k.startswith("dice_")]
        row["dice_per_class"] = {c: float(np.mean([100 * r["test"][f"dice_{c}"]["mean"]
                                                   for r in runs])) for c in classes}
        rows.append(row)
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The table; Dice is the mean over the foreground classes, and a multi-class table also
    shows each class's Dice."""
    classes = any(row.get("dice_per_class") for row in rows)
    columns = rows[0]["columns"]
    lines = ["| method | " + "".join(f"{heading} | " for _, heading in columns)
             + ("Dice per class | " if classes else "")
             + "Dice per selection | val Dice per selection | entry |",
             "|---|" + "---|" * (len(columns) + 3 + classes)]
    for row in rows:
        per = " / ".join(f"{v:.2f}" for v in row["dice"]["per_selection"])
        val = " / ".join(f"{v:.2f}" for v in row["val_dice"])
        lines.append(
            f"| {row['label']} | "
            + "".join(f"{row[m]['mean']:.2f} ± {row[m]['std']:.2f} | " for m, _ in columns)
            + (f"{per_class_text(row)} | " if classes else "")
            + f"{per} | {val} | `{row['method']}` |"
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
    columns = table_columns(results)
    writer.writerow(["method", "label", "selection", *(m for m, _, _ in columns), "val_dice"])
    for r in results:
        t = r["test"]
        writer.writerow([r["variant"], label_of(r), r["selection"],
                         *(f"{scale * t[m]['mean']:.4f}" for m, _, scale in columns),
                         f"{100 * r['val']['dice']['mean']:.4f}"])
    write_text(output / "table.csv", lines.getvalue())
    print(markdown_table(rows) + paired)
    return {"rows": rows, "comparisons": comparisons}
