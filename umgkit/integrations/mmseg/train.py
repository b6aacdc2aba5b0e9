"""``umgkit mmseg-train``: mmseg's own ``Runner`` with the umgkit backbone, and umgkit's checkpoints.

What differs from mmseg's ``tools/train.py``:

- the optimizer holds the trainable parameters only (`TrainableOnlyOptimWrapperConstructor`; mmengine's
  default constructor also hands it every frozen backbone weight);
- mmengine's ``CheckpointHook`` (pickled full segmentors, frozen ViT included) is replaced by
  `UMGKitCheckpointHook`: every ``interval`` iterations and after the last, ``WORK_DIR/checkpoints/
  step_XXXXXXX/`` with ``trainable.safetensors``, ``optimizer.safetensors`` + ``optimizer.json``,
  ``scheduler.json`` (mmengine's parameter schedulers), ``trainer_state.json``, the adapter alone in
  ``adapter/`` (`umgkit.adapters.load_adapter` reads it) and a ``complete`` marker written last;
- ``--resume`` restores the newest of those (weights, optimizer moments, schedules, iteration); mmseg's
  iteration loop then skips the batches already trained on, as for its own resume.
Evaluation is mmseg's (``val_evaluator``, e.g. ``IoUMetric``). At the end ``WORK_DIR/adapter/`` holds the
trained adapter.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import HOOKS, OPTIM_WRAPPER_CONSTRUCTORS

from ...engine.checkpoint import json_ready
from .. import _checkpoint
from .export import _find

__all__ = ["TrainableOnlyOptimWrapperConstructor", "UMGKitCheckpointHook", "prepare_config", "train"]

log = logging.getLogger(__name__)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableOnlyOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's constructor (``paramwise_cfg`` and all) minus the parameters that do not learn."""

    def add_params(self, params: list[dict], module: Any, prefix: str = "",
                   is_dcn_module: Any = None) -> None:
        super().add_params(params, module, prefix=prefix, is_dcn_module=is_dcn_module)
        params[:] = [group for group in params if group["params"][0].requires_grad]


def _model(runner: Any) -> Any:
    model = runner.model
    return model.module if hasattr(model, "module") else model  # MMDistributedDataParallel


@HOOKS.register_module()
class UMGKitCheckpointHook(Hook):
    """Trainable-only checkpoints in umgkit's layout, and ``--resume`` from them (module docstring)."""

    priority = "VERY_LOW"

    def __init__(self, interval: int = 1000, resume: bool = False, keep_last: int = 0) -> None:
        self.interval, self.resume, self.keep_last = int(interval), bool(resume), int(keep_last)

    def before_train(self, runner: Any) -> None:
        if not self.resume:
            return
        path = _checkpoint.resumable_checkpoint(Path(runner.work_dir) / "checkpoints")
        if path is None:
            runner.logger.info(f"--resume: no checkpoint under {runner.work_dir}/checkpoints; starting fresh")
            return
        step = load_training_state(runner, path)
        runner.logger.info(f"resumed from {path} (iteration {step})")

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None,
                         outputs: Any = None) -> None:
        done = runner.iter + 1
        if (self.interval > 0 and done % self.interval == 0) or done >= runner.max_iters:
            save_training_state(runner, Path(runner.work_dir) / "checkpoints", done, keep_last=self.keep_last)


def save_training_state(runner: Any, root: Path, step: int, *, keep_last: int = 0) -> Path | None:
    """Write ``root/step_<step>`` (main process): trainable weights, optimizer, schedules, adapter."""
    if not is_main_process():
        return None
    model = _model(runner)
    bridge = _find(model)
    export = bridge.umgkit.export_adapter if bridge.adapter.method != "frozen" else None
    schedules = {"schedulers": [json_ready(s.state_dict()) for s in _schedulers(runner)]}
    return _checkpoint.save_training_state(root, step, model=model, optimizer=runner.optim_wrapper.optimizer,
                                           scheduler_state=schedules, trainer_state={"epoch": runner.epoch},
                                           export_adapter=export, keep_last=keep_last)


def load_training_state(runner: Any, path: Path) -> int:
    """Restore what `save_training_state` wrote; the loop continues at the saved iteration."""
    schedules, state = _checkpoint.load_training_state(path, model=_model(runner),
                                                       optimizer=runner.optim_wrapper.optimizer)
    for scheduler, saved in zip(_schedulers(runner), schedules["schedulers"], strict=True):
        scheduler.load_state_dict(saved)
    runner.train_loop._iter = int(state["step"])  # IterBasedTrainLoop then skips the consumed batches
    runner.train_loop._epoch = int(state.get("epoch", 0))
    return int(state["step"])


def _schedulers(runner: Any) -> list:
    schedulers = runner.param_schedulers or []
    return list(schedulers.values())[0] if isinstance(schedulers, dict) else list(schedulers)


def prepare_config(config: str | os.PathLike, *, work_dir: str | None = None, resume: bool = False,
                   cfg_options: dict | None = None) -> Config:
    """The mmseg config with umgkit's optimizer constructor and checkpoint hook swapped in."""
    cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.work_dir = work_dir or cfg.get("work_dir") or str(Path("work_dirs") / Path(config).stem)
    cfg.optim_wrapper.constructor = "TrainableOnlyOptimWrapperConstructor"
    interval = cfg.get("default_hooks", {}).get("checkpoint", {}).get("interval", 1000)
    keep = cfg.get("default_hooks", {}).get("checkpoint", {}).get("max_keep_ckpts", -1)
    cfg.default_hooks.checkpoint = dict(type="UMGKitCheckpointHook", interval=interval, resume=resume,
                                        keep_last=max(0, int(keep)))
    cfg.resume, cfg.load_from = False, None  # resuming is the hook's (mmengine's would unpickle)
    return cfg


def train(config: str | os.PathLike, *, work_dir: str | None = None, resume: bool = False,
          cfg_options: dict | None = None) -> Path:
    """Train the config with mmseg's Runner; returns ``WORK_DIR/adapter`` (the trained adapter)."""
    from mmengine.runner import Runner

    cfg = prepare_config(config, work_dir=work_dir, resume=resume, cfg_options=cfg_options)
    runner = Runner.from_cfg(cfg)
    runner.train()
    out = Path(cfg.work_dir) / "adapter"
    if is_main_process():
        bridge = _find(_model(runner))
        if bridge.adapter.method != "frozen":
            bridge.umgkit.export_adapter(out)
    return out
