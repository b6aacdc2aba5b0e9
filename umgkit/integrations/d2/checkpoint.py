"""detectron2's checkpoints replaced by umgkit's step folders (trainable parameters only, no pickle).

detectron2's ``PeriodicCheckpointer`` pickles the whole model, frozen backbone included.
`TrainableCheckpointer` instead writes, every ``SOLVER.CHECKPOINT_PERIOD`` iterations and after the last
one (main process), ``<OUTPUT_DIR>/checkpoints/step_<iter+1>/`` through the engine's writer
(`umgkit.integrations._checkpoint`): trainable weights, the optimizer's state, detectron2's LR scheduler
(and AMP grad scaler), the iteration, ``umgkit_model.json`` and the adapter alone under ``adapter/``,
sealed by a checksummed ``complete`` marker; ``UMGKIT.KEEP_LAST`` keeps that many newest steps.
`resume_training` restores all of it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from detectron2.engine import HookBase
from detectron2.utils import comm
from torch import nn

from ...engine.checkpoint import json_ready
from .._checkpoint import load_training_state, save_training_state

__all__ = ["TrainableCheckpointer", "load_trainable_weights", "save_training_checkpoint", "resume_training",
           "find_bridge"]

log = logging.getLogger(__name__)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model  # DistributedDataParallel


def find_bridge(model: nn.Module):
    """The `UMGKitBackbone` inside a detectron2 model, or None."""
    from .backbone import UMGKitBackbone

    return next((m for m in _unwrap(model).modules() if isinstance(m, UMGKitBackbone)), None)


def _grad_scaler(trainer: Any):
    return getattr(getattr(trainer, "_trainer", None), "grad_scaler", None)  # AMPTrainer's


def save_training_checkpoint(trainer: Any, root: str | os.PathLike, *, keep_last: int = 0) -> Path:
    """Write ``root/step_<iter+1>`` for a detectron2 ``DefaultTrainer`` after its iteration ``iter``."""
    step = int(trainer.iter) + 1  # iterations completed
    model = _unwrap(trainer.model)
    bridge = find_bridge(model)
    schedules = {"scheduler": json_ready(trainer.scheduler.state_dict())}
    scaler = _grad_scaler(trainer)
    if scaler is not None:
        schedules["grad_scaler"] = json_ready(scaler.state_dict())
    info, export = {}, None
    if bridge is not None:
        info = dict(bridge.umgkit.info)
        export = bridge.umgkit.export_adapter if bridge.adapter.method != "frozen" else None
    return save_training_state(root, step, model=model, optimizer=trainer.optimizer,
                               scheduler_state=schedules, info=info, export_adapter=export,
                               keep_last=keep_last)


def resume_training(trainer: Any, path: str | os.PathLike) -> int:
    """Restore what `save_training_checkpoint` wrote into ``trainer`` (weights, optimizer moments, LR
    scheduler, grad scaler); returns the iteration to start at."""
    schedules, state = load_training_state(path, model=_unwrap(trainer.model), optimizer=trainer.optimizer)
    trainer.scheduler.load_state_dict(schedules["scheduler"])
    scaler = _grad_scaler(trainer)
    if scaler is not None and "grad_scaler" in schedules:
        scaler.load_state_dict(schedules["grad_scaler"])
    return int(state["step"])


def load_trainable_weights(model: nn.Module, directory: str | os.PathLike) -> int:
    """Load the trainable weights of a step folder into ``model`` (no optimizer); returns its step."""
    return int(load_training_state(directory, model=_unwrap(model))[1]["step"])


class TrainableCheckpointer(HookBase):
    """Saves a step folder every ``period`` iterations and after the last (main process only)."""

    def __init__(self, output_dir: str | os.PathLike, period: int, keep_last: int = 0) -> None:
        self.root = Path(output_dir) / "checkpoints"
        self.period, self.keep_last = int(period), int(keep_last)

    def after_step(self) -> None:
        if not comm.is_main_process():
            return
        done = self.trainer.iter + 1
        if (self.period > 0 and done % self.period == 0) or done >= self.trainer.max_iter:
            path = save_training_checkpoint(self.trainer, self.root, keep_last=self.keep_last)
            log.info("saved checkpoint %s", path)
