"""Config -> components, in one place, so every task builds backbones, adapters and data alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from ..adapters import Adapter, apply_adapter
from ..backbones import Backbone, create_backbone
from ..config import DataConfig, ModelConfig, RunConfig
from ..engine import Task, seed_everything
from ..registry import DATASETS, TASKS

__all__ = ["build_backbone", "build_dataset", "build_task"]


def build_task(cfg: RunConfig) -> Task:
    """The task ``cfg.task`` with its model initialised from ``cfg.seed``.

    Seeding happens before the task builds its model, so randomly initialised weights (heads, adapters,
    un-pretrained backbones) are the same in every run and on every process.
    """
    if cfg.task not in TASKS:
        from .. import pretrain  # noqa: F401  registers 'pretrain' (it imports this module: not at the top)
    seed_everything(cfg.seed)
    return TASKS.build(cfg.task, cfg=cfg)


def build_backbone(model: ModelConfig) -> tuple[Backbone, Adapter]:
    """The frozen backbone named by ``model.backbone`` with ``model.adapter`` applied in place."""
    backbone = create_backbone(model.backbone, pretrained=model.pretrained)
    adapter = apply_adapter(backbone, model.adapter, **model.adapter_options)
    if model.grad_checkpointing:
        backbone.set_grad_checkpointing(True)
    return backbone, adapter


def build_dataset(data: DataConfig, split: str, transform: Callable | None, default_format: str,
                  **extra: Any) -> Dataset:
    """The reader ``data.format`` (or the task's default) over ``data.root`` for ``split``.

    ``data.options`` and ``extra`` (task-supplied, e.g. ``reduce_zero_label``) go to the reader; the
    class count is checked against ``data.num_classes`` by the reader itself.
    """
    if data.synthetic.out:
        from ..data.synth import ensure_world

        s = data.synthetic
        ensure_world(s.out, num=s.num, size=s.size, seed=s.seed, val_fraction=s.val_fraction)
    if not data.root:
        raise ValueError("data.root is empty: set it to the dataset folder in the config or on the command "
                         "line (data.root=/path/to/dataset).")
    options = {**extra, **data.options}
    if data.class_names:
        options.setdefault("class_names_file", data.class_names)
    return DATASETS.build(data.format or default_format, root=data.root, split=split, transform=transform,
                          skip_bad=data.skip_bad, num_classes=data.num_classes, limit=data.limit, **options)
