"""Per-epoch metrics: a JSONL file in the run folder (and TensorBoard when asked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clcc.files import write_text


class MetricsLog:
    def __init__(self, path: Path, tensorboard: bool = False, keep_epochs: int = 0) -> None:
        """Open `path`, keeping only records of the first `keep_epochs` epochs: lines a killed
        run wrote after its last checkpoint are dropped, so a resumed log has no duplicates."""
        self.path = Path(path)
        kept = [json.dumps(r) for r in read_log(self.path) if r["epoch"] <= keep_epochs]
        write_text(self.path, "".join(f"{ln}\n" for ln in kept))
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.path.parent / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a log; a line cut short by a killed process is skipped."""
    if not Path(path).exists():
        return []
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
