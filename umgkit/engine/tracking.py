"""Scalar logging: TensorBoard under ``output_dir/tb`` and one JSON row per call in ``metrics.jsonl``.

The JSONL file exists so tests, reports and plotting scripts can read curves without TensorBoard.
Each row is ``{"step": <optimizer step>, "<split>/<name>": <float>, ...}``, e.g.
``{"step": 10, "train/loss": 0.41, "train/lr": 0.001, "train/images_per_s": 812.5}``.
Only the main process writes; on other processes every method is a no-op.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .._io import atomic_write_text

__all__ = ["RunLogger", "read_metrics"]


class RunLogger:
    """Writes scalar rows for one run.

    ``resume_step``: when a run resumes from a checkpoint at that step, rows logged after it by the
    interrupted run are dropped (from ``metrics.jsonl`` and, via ``purge_step``, from TensorBoard) so
    the files hold one curve rather than the overlap of two.
    """

    def __init__(self, output_dir: str | os.PathLike, *, enabled: bool, resume_step: int | None = None,
                 tensorboard: bool = True):
        self.enabled = enabled
        self.path = Path(output_dir) / "metrics.jsonl"
        self._writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            kept = [row for row in read_metrics(self.path) if row.get("step", 0) <= resume_step]
            _write_rows(self.path, kept)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported late: tensorboard is slow to load

            purge = resume_step + 1 if resume_step is not None else None
            self._writer = SummaryWriter(str(Path(output_dir) / "tb"), purge_step=purge)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Append one row; non-finite values are written as JSON ``null`` so the file stays parseable."""
        if not self.enabled or not scalars:
            return
        row = {"step": int(step)}
        for key, value in scalars.items():
            value = float(value)
            row[key] = value if math.isfinite(value) else None
            if self._writer is not None:
                self._writer.add_scalar(key, value, int(step))
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_metrics(path: str | os.PathLike, key: str | None = None) -> list[dict]:
    """Rows of a ``metrics.jsonl``; with ``key``, only rows that carry it (e.g. ``"train/loss"``)."""
    rows = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return [r for r in rows if key is None or key in r]


def _write_rows(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
