"""One output folder, one run: a fresh run never writes beside another run's checkpoints and metrics.

Without this a second ``umgkit train`` into the same ``output_dir`` appended to the first run's
``metrics.jsonl`` and left its checkpoints beside the new ones, so a later resume or evaluation could pick
the old run's newest step.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import RunFolderError

__all__ = ["RUN_OUTPUTS", "run_traces", "claim_run_folder"]

# What a training run writes under output_dir; --overwrite removes exactly these.
RUN_OUTPUTS = ("checkpoints", "metrics.jsonl", "tb", "vis", "model", "config.yaml")


def run_traces(output_dir: str | os.PathLike) -> list[str]:
    """What in ``output_dir`` shows that a run trained there: checkpoints, logged metrics, a model."""
    out = Path(output_dir)
    traces = []
    checkpoints = out / "checkpoints"
    steps = sorted(p.name for p in checkpoints.glob("step_*")) if checkpoints.is_dir() else []
    if steps:
        traces.append(f"checkpoints/{steps[-1]}" + (f" (+{len(steps) - 1} more)" if len(steps) > 1 else ""))
    metrics = out / "metrics.jsonl"
    if metrics.is_file() and metrics.stat().st_size > 0:
        traces.append("metrics.jsonl")
    if (out / "model" / "model.json").is_file():
        traces.append("model/")
    return traces


def claim_run_folder(output_dir: str | os.PathLike, *, overwrite: bool) -> list[str]:
    """Make ``output_dir`` this fresh run's own: raise `RunFolderError` if another run left results there,
    or with ``overwrite`` delete them (only what a run writes, see `RUN_OUTPUTS`). Returns what was deleted.
    """
    out = Path(output_dir)
    traces = run_traces(out)
    if not traces:
        return []
    if not overwrite:
        raise RunFolderError(
            f"output_dir {out} holds another run ({', '.join(traces)}). Continue that run with --resume "
            f"(train.resume=auto), start over with --overwrite (train.overwrite=true; deletes its "
            f"checkpoints, metrics and model), or set output_dir=... to a new folder.")
    removed = []
    for name in RUN_OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed
