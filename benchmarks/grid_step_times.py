"""Milliseconds per training step of each finished run of a grid, from its metrics.jsonl:
epochs without validation only (their time_s is training alone), over the steps they made.

    python benchmarks/grid_step_times.py runs/acdc-quick-grid
"""

import json
import sys
from pathlib import Path

for run in sorted(Path(sys.argv[1]).iterdir()):
    log = run / "metrics.jsonl"
    if not (run / "results.json").exists() or not log.exists():
        continue
    records = [json.loads(line) for line in log.read_text().splitlines()]
    times, steps, prev = [], [], 0
    for r in records:
        if "val/dice" not in r:
            times.append(r["time_s"])
            steps.append(r["step"] - prev)
        prev = r["step"]
    total = sum(r["time_s"] for r in records)
    print(f"{run.name:24s} {1000 * sum(times) / sum(steps):7.0f} ms/step  whole run "
          f"{total / 60:5.1f} min (training + validation)")
