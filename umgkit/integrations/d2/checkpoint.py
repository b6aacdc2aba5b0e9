"""Checkpoints of the trainable parameters only (adapter + neck + heads), in umgkit's format.

Replaces detectron2's ``PeriodicCheckpointer`` (which pickles the whole model, frozen backbone
included): every ``SOLVER.CHECKPOINT_PERIOD`` iterations and after the last one, the main process
writes ``<OUTPUT_DIR>/checkpoints/step_<iter+1>/`` with ``trainable.safetensors``, ``trainer_state.json``,
``umgkit_model.json`` and the ``complete`` marker (`umgkit.integrations._common.save_trainable`), plus the
adapter alone under ``adapter/`` (`umgkit.adapters.save_adapter` format).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from detectron2.engine import HookBase
from detectron2.utils import comm
from torch import nn

from .._common import load_trainable, save_trainable

__all__ = ["TrainableCheckpointer", "load_trainable_weights", "save_trainable_weights", "find_bridge"]

log = logging.getLogger(__name__)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model  # DistributedDataParallel


def find_bridge(model: nn.Module):
    """The `UMGKitBackbone` inside a detectron2 model, or None."""
    from .backbone import UMGKitBackbone

    return next((m for m in _unwrap(model).modules() if isinstance(m, UMGKitBackbone)), None)


def save_trainable_weights(model: nn.Module, directory: str | os.PathLike, *, step: int) -> Path:
    """Write ``model``'s trainable parameters (+ the adapter alone) into ``directory``; returns it."""
    model = _unwrap(model)
    bridge = find_bridge(model)
    info = dict(bridge.umgkit.info) if bridge is not None else {}
    out = save_trainable(model, directory, step=step, info=info)
    if bridge is not None and bridge.adapter.method not in ("frozen",):
        bridge.umgkit.export_adapter(out / "adapter")
    return out


def load_trainable_weights(model: nn.Module, directory: str | os.PathLike) -> int:
    """Load a directory written by `save_trainable_weights` into ``model``; returns its step."""
    return int(load_trainable(_unwrap(model), directory)["step"])


class TrainableCheckpointer(HookBase):
    """Saves trainable parameters every ``period`` iterations and after the last (main process only)."""

    def __init__(self, output_dir: str | os.PathLike, period: int) -> None:
        self.root = Path(output_dir) / "checkpoints"
        self.period = int(period)

    def _save(self) -> None:
        step = self.trainer.iter + 1  # iterations completed
        path = save_trainable_weights(self.trainer.model, self.root / f"step_{step:07d}", step=step)
        log.info("saved trainable parameters to %s", path)

    def after_step(self) -> None:
        if not comm.is_main_process():
            return
        done = self.trainer.iter + 1
        if (self.period > 0 and done % self.period == 0) or done >= self.trainer.max_iter:
            self._save()
