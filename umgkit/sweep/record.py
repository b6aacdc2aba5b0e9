"""``SWEEP/sweep.json``: what a worker, ``--resume`` and ``--report`` need to know about a sweep folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .spec import Cell, SweepSpec, load_spec

__all__ = ["SWEEP_FILE", "load_sweep_record", "write_record"]

SWEEP_FILE = "sweep.json"


def load_sweep_record(folder: str | os.PathLike) -> tuple[SweepSpec, str]:
    """The spec and storage URL of the sweep in ``folder`` (what a worker needs)."""
    record = json.loads((Path(folder) / SWEEP_FILE).read_text(encoding="utf-8"))
    return load_spec(record["spec"]), record["storage"]


def write_record(folder: Path, spec: SweepSpec, storage: str, cells: list[Cell], metrics: dict) -> None:
    from .._io import atomic_write_text

    record = {"spec": str(spec.path.resolve()), "storage": storage, "direction": spec.direction,
              "seeds": spec.seeds,
              "cells": [{"name": c.name, "dataset": c.dataset, "method": c.method, "setting": c.setting,
                         "config": str(c.config),
                         "metric": metrics[c.name], "axes": {k: v for k, v in c.axes}} for c in cells]}
    atomic_write_text(folder / SWEEP_FILE, json.dumps(record, indent=1) + "\n")
