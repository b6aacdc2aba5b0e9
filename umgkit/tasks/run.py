"""A training run that ends as a model folder, and the evaluation of any saved model: what ``umgkit
train`` / ``umgkit eval`` and the demo do, callable from Python."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..engine import Task, Trainer, evaluate_task
from ..models import TaskModel, load_model, resolve_model_source
from ..models.folder import MODEL_DIR, save_model_folder, write_model_metadata
from .build import build_task

__all__ = ["train_and_save", "evaluate_saved"]


def train_and_save(cfg: Any) -> tuple[Task, dict[str, float]]:
    """Build ``cfg``'s task, train it, and write ``OUTPUT_DIR/model/``; returns the task and final metrics.

    The model folder's metadata is written before training starts, so every checkpoint of the run can
    be evaluated (``umgkit eval OUTPUT_DIR/checkpoints/step_*``) even if the run never finishes.
    """
    task = build_task(cfg)
    trainer = Trainer(task, cfg)
    acc = trainer.accelerator
    folder = Path(cfg.output_dir) / MODEL_DIR
    saves_model = isinstance(task.model, TaskModel)
    if saves_model and acc.is_main_process:
        write_model_metadata(task.model, folder)
    metrics = trainer.fit()
    if saves_model:
        model = _full_model(trainer, cfg)  # on every process: it may gather shards
        if acc.is_main_process:
            save_model_folder(model, folder, metrics=metrics)
    acc.wait_for_everyone()
    return task, metrics


def _full_model(trainer: Trainer, cfg: Any) -> TaskModel | None:
    """The trained model with whole tensors, on the main process (call on every process).

    Under FSDP or ZeRO-3 a process holds only shards of the weights: the trainable ones are gathered and
    copied into a model rebuilt from the config (frozen weights load from their file again).
    """
    from .._tensors import copy_named, fit_data_sized_state, head_buffers
    from ..engine.strategy import shards_parameters
    from ..models import build_model

    acc = trainer.accelerator
    trained = acc.unwrap_model(trainer.model)
    if not shards_parameters(acc):
        return trained
    full = trainer.trainable_state()
    if not acc.is_main_process:
        return None
    model = build_model(cfg, trained.class_names, thing_classes=trained.thing_classes,
                        category_ids=trained.category_ids)
    buffers = {n: t.detach().cpu() for n, t in head_buffers(trained).items()}  # not sharded: whole here
    fit_data_sized_state(model, {**full, **buffers})  # a few-shot cache: the rebuilt head starts empty
    fix = "This is a bug: the rebuilt model differs from the trained one."
    copy_named({n: p for n, p in model.named_parameters() if p.requires_grad}, full, source="the run",
               fix=fix)
    copy_named(head_buffers(model), buffers, source="the run", fix=fix)
    return model


def evaluate_saved(source: str | os.PathLike, overrides: Iterable[str] = ()) -> tuple[Any, dict[str, float]]:
    """Metrics of a run / model / checkpoint folder on its config's val split (or the split the
    ``overrides`` name, e.g. ``data.root=... data.val_split=...``), without reading the train split. A
    config file is evaluated as built (zero-shot heads). Returns ``(config, metrics)``."""
    from ..config import load_config

    source = resolve_model_source(source)
    if source.kind == "config":
        cfg = load_config(source.path, list(overrides))
        task = build_task(cfg, train=False)
    else:
        model = load_model(source, overrides=overrides)
        cfg = model.config
        task = build_task(cfg, model=model, train=False)
    return cfg, evaluate_task(task, cfg)
