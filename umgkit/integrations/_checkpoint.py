"""The bridges' training checkpoints: the engine's step folders, filled from a framework's own objects.

The detectron2 and mmseg bridges write ``<root>/step_XXXXXXX/`` through the engine's writer
(`umgkit.engine.checkpoint.write_state_files`, sealed by `publish_checkpoint`): ``trainable.safetensors``,
``optimizer.safetensors`` + ``optimizer.json``, ``scheduler.json`` (the framework's schedules),
``trainer_state.json`` and the checksummed ``complete`` marker, with older steps beyond ``keep_last``
removed; plus what only a bridge has: ``umgkit_model.json`` (what the backbone was built from) and
``adapter/`` (the adapter alone, for a plain umgkit backbone). Resuming checks the folder first and
restores the weights and the optimizer's state (Adam's moments included); each framework then restores
its own schedules and loop position from the states returned.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..engine.checkpoint import (
    find_resumable,
    publish_checkpoint,
    restore_state_files,
    trainable_state_dict,
    write_state_files,
)

__all__ = ["save_training_state", "load_training_state", "resumable_checkpoint", "MODEL_INFO_NAME"]

log = logging.getLogger(__name__)

MODEL_INFO_NAME = "umgkit_model.json"


def save_training_state(root: str | os.PathLike, step: int, *, model: nn.Module,
                        optimizer: torch.optim.Optimizer, scheduler_state: Mapping[str, Any],
                        trainer_state: Mapping[str, Any] | None = None,
                        info: Mapping[str, Any] | None = None,
                        export_adapter: Callable[[Path], Any] | None = None, keep_last: int = 0) -> Path:
    """Write ``root/step_<step>`` (call on the main process only); returns it.

    ``model`` is the unwrapped module (names as in it); ``scheduler_state`` is JSON-ready data the caller
    gets back from `load_training_state`; ``trainer_state`` gets ``step`` added; ``info`` goes to
    ``umgkit_model.json``; ``export_adapter(folder)`` writes the adapter alone. ``keep_last > 0`` keeps
    that many newest steps. Everything is written into a temp folder first, so a kill leaves no
    half-written step.
    """
    root = Path(root)
    tensors = trainable_state_dict(model)
    if not tensors:
        raise ValueError("the model has no trainable parameters; there is nothing to checkpoint.")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ckpt-", suffix=".tmp", dir=root))  # ignored until published
    write_state_files(tmp, trainable=tensors, optimizer=optimizer, scheduler_state=dict(scheduler_state),
                      trainer_state=dict(trainer_state or {}, step=int(step)))
    if info is not None:
        (tmp / MODEL_INFO_NAME).write_text(json.dumps(dict(info), indent=2, sort_keys=True), encoding="utf-8")
    if export_adapter is not None:
        export_adapter(tmp / "adapter")
    return publish_checkpoint(tmp, root, int(step), keep_last=keep_last)


def load_training_state(path: str | os.PathLike, *, model: nn.Module,
                        optimizer: torch.optim.Optimizer | None = None) -> tuple[dict, dict]:
    """Restore a folder `save_training_state` wrote: trainable weights into ``model`` and, when given, the
    optimizer's state; returns ``(scheduler_state, trainer_state)``. ``optimizer=None`` loads the weights
    alone (evaluation, ``MODEL.WEIGHTS``). Raises `umgkit.errors.CheckpointError` for an incomplete or
    damaged folder, or weights that do not fit ``model``."""
    return restore_state_files(path, model=model, optimizer=optimizer)


def resumable_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest intact step folder under ``root`` (None if there is none); each newer one that fails
    its checks is logged with the reason and passed over."""
    path, skipped = find_resumable(root)
    for bad, why in skipped:
        log.warning("not resuming from %s: %s", bad, why)
    return path
