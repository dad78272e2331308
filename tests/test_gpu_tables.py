"""scripts/gpu-tables, run as a GPU machine would run it, on synthetic data with a tiny budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from clcc.data.synthetic import write_synthetic

from conftest import TINY

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu-tables"


@pytest.mark.slow
def test_gpu_tables_runs_what_fits_and_packs_the_results(tmp_path: Path):
    """The first pass only (`--passes 1`) with a budget no machine spends on it: what runs
    does not depend on how fast or busy the machine is (the budget logic itself is tested
    with an injected clock in test_report.py)."""
    write_synthetic(tmp_path / "raw", count=30, size=48)
    sets = [a for s in TINY if not s.startswith("train.threads") for a in ("--set", s)]
    cmd = [str(SCRIPT), "--source", str(tmp_path / "raw"), "--kind", "folder", "--labelled", "6",
           "--budget", "120", "--passes", "1", "--jobs", "2", "--output", "out",
           "--patches", "2", "--evidence", str(tmp_path / "evidence"), *sets]
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mean-teacher" not in done.stdout  # the second pass was not asked for
    table = json.loads((tmp_path / "out" / "grid" / "table.json").read_text())
    assert [r["method"] for r in table["rows"]] == ["supervised", "clcc:n=2"]
    assert all(r["selections"] == [0, 1, 2] for r in table["rows"])
    with tarfile.open(tmp_path / "out" / "results.tgz") as tar:
        names = tar.getnames()
    assert "grid/table.md" in names and "machine.txt" in names
    assert "grid/supervised-sel0/test_per_image.csv" in names
    assert not [n for n in names if n.endswith((".pt", ".lock")) or "/cache/" in n]
    # the finished runs became committed evidence, and a later call (a fresh machine: the same
    # command in another checkout) counts them as done instead of training them again
    (lease,) = (tmp_path / "evidence").iterdir()
    kept = sorted(p.relative_to(lease).as_posix() for p in lease.rglob("*") if p.is_file())
    assert "supervised-sel0/results.json" in kept and "command.txt" in kept
    assert not [n for n in kept if n.endswith(".pt")]
    finished = len([n for n in kept if n.endswith("/results.json")])
    assert finished == 6
    again = cmd
    (tmp_path / "fresh").mkdir()
    done = subprocess.run(again, env=env, capture_output=True, text=True, timeout=600,
                          cwd=tmp_path / "fresh")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{finished} already done" in done.stdout
