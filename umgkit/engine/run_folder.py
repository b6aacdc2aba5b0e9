"""One output folder, one run: a fresh run never writes beside another run's checkpoints and metrics.

Without this a second ``umgkit train`` into the same ``output_dir`` appended to the first run's
``metrics.jsonl`` and left its checkpoints beside the new ones, so a later resume or evaluation could pick
the old run's newest step.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .._io import check_output_folder
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
    if _finished_model(out / "model" / "model.json"):
        traces.append("model/")
    return traces


def _finished_model(info_file: Path) -> bool:
    """A model folder a run completed. Its metadata is written (``complete: false``) when training starts;
    without checkpoints or metrics that marks a start that failed (e.g. while building), not a result."""
    if not info_file.is_file():
        return False
    try:
        return json.loads(info_file.read_text(encoding="utf-8")).get("complete") is not False
    except (OSError, ValueError, AttributeError):
        return True  # unreadable: keep it, as a result might be


def claim_run_folder(output_dir: str | os.PathLike, *, overwrite: bool) -> list[str]:
    """Make ``output_dir`` this fresh run's own: raise `RunFolderError` if another run left results there,
    or with ``overwrite`` delete them (only what a run writes, see `RUN_OUTPUTS`). What a start that never
    trained left (config.yaml, tb/, an unfinished model/) is deleted without asking, so the corrected
    command runs as typed. Returns what was deleted.
    """
    out = check_output_folder(output_dir, "output_dir")
    traces = run_traces(out)
    if not traces:  # nothing trained here; a failed start (unfinished model/) leaves files to clear
        return _remove_outputs(out) if (out / "model" / "model.json").is_file() else []
    if not overwrite:
        raise RunFolderError(
            f"output_dir {out} holds another run ({', '.join(traces)}). Continue that run with --resume "
            f"(train.resume=auto), start over with --overwrite (train.overwrite=true; deletes its "
            f"checkpoints, metrics and model), or set output_dir=... to a new folder.")
    return _remove_outputs(out)


def _remove_outputs(out: Path) -> list[str]:
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
