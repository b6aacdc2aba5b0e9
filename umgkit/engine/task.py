"""The small interface through which the generic engine trains and evaluates any task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = ["Task"]


@runtime_checkable
class Task(Protocol):
    """What the trainer needs from a task; the trainer imports no specific task.

    ``model`` holds the frozen backbone, adapters and head; only parameters with ``requires_grad``
    are optimised and checkpointed. ``training_step`` returns a dict with a scalar ``"loss"`` plus any
    other scalars to log. ``evaluate`` runs on every process over a loader already sharded by
    Accelerate and returns the same dataset-level metrics on every process (gathering is the task's
    job, through ``accelerator.gather_for_metrics``). ``visualise`` writes PNGs for a few samples.

    Optional: ``empty_batch()`` returns a batch of zero samples that ``training_step`` accepts. A task
    whose step runs collectives of its own (gathered negatives) must offer it: a process whose samples
    were all skipped then still joins them. Without it, such a process re-runs its previous batch with
    the outputs multiplied by 0. ``train_dataset`` may be an ``IterableDataset`` with the planning
    methods of `umgkit.data.ShardStream` (``batches_per_epoch``, ``plan``).
    """

    model: nn.Module
    train_dataset: Dataset
    val_dataset: Dataset | None
    collate_fn: Callable[[list], Any] | None

    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]: ...

    def evaluate(self, model: nn.Module, loader: Any, accelerator: Any) -> dict[str, float]: ...

    def visualise(self, model: nn.Module, batch: Any, out_dir: Path) -> list[Path]: ...
