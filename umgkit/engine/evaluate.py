"""Evaluation without training: a task's val split through ``task.evaluate``, on one or more processes.

`Trainer.evaluate` and ``umgkit eval`` share `run_evaluation`, so a run's final metrics and a later
evaluation of its saved model are computed by the same code on the same batches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from ..errors import DatasetError
from ._accel import make_accelerator
from ._loader_options import loader_options
from .task import Task

__all__ = ["evaluate_task", "run_evaluation", "val_loader"]


def val_loader(task: Task, cfg: Any) -> DataLoader | None:
    """The val split in order, ``data.eval_batch_size`` (else ``batch_size``) per process; None without
    one (``data.val_split`` empty). A val split that exists but holds no sample is an error: evaluating it
    would end the run without metrics and without saying why."""
    d = cfg.data
    if task.val_dataset is None:
        return None
    if not isinstance(task.val_dataset, IterableDataset) and len(task.val_dataset) == 0:
        raise DatasetError(f"the val split '{d.val_split}' of {d.root} has no samples; add some, or set "
                           "data.val_split='' to train without evaluation.")
    return DataLoader(task.val_dataset, batch_size=d.eval_batch_size or d.batch_size, shuffle=False,
                      collate_fn=task.collate_fn, generator=torch.Generator().manual_seed(cfg.seed),
                      **loader_options(d.num_workers, persistent=False))


def run_evaluation(task: Task, model: nn.Module, loader: Any, accelerator: Any) -> dict[str, float]:
    """``task.evaluate`` in eval mode, without gradients, under the run's autocast; floats out."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), accelerator.autocast():
            metrics = task.evaluate(model, loader, accelerator)
    finally:
        model.train(was_training)
    return {k: float(v) for k, v in metrics.items()}


def evaluate_task(task: Task, cfg: Any, *, accelerator: Any = None) -> dict[str, float]:
    """Evaluate ``task.model`` on ``task.val_dataset`` as the end of training does; {} without a val split."""
    loader = val_loader(task, cfg)
    if loader is None:
        return {}
    acc = accelerator or make_accelerator(cfg.train.mixed_precision, cfg.seed, cfg.train.grad_accum)
    model, loader = acc.prepare(task.model, loader)
    return run_evaluation(task, model, loader, acc)
