"""`build_model`: backbone + adapter + head from a run config and a class list, reading no dataset.

Example:
    >>> from umgkit.config import config_from_dict
    >>> cfg = config_from_dict({"task": "classification", "data": {"image_size": 64},
    ...                         "model": {"backbone": "umg:tiny", "adapter": "lora", "head": "linear"}})
    >>> model = build_model(cfg, class_names=["circle", "square"])
    >>> model(images=torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 2])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import heads  # noqa: F401  registers the heads the model builders name
from ..adapters import Adapter
from ..backbones import Backbone
from ..config import ConfigError, ModelConfig, RunConfig
from ..errors import WeightsError, at_key
from ..registry import ADAPTERS, BACKBONES, MODELS
from .base import TaskModel

__all__ = ["build_backbone", "build_model"]


def build_backbone(model: ModelConfig) -> tuple[Backbone, Adapter]:
    """The frozen backbone named by ``model.backbone`` with ``model.adapter`` applied in place."""
    with at_key("model.pretrained" if model.pretrained else "model.backbone", WeightsError):
        backbone = BACKBONES.create(model.backbone, pretrained=model.pretrained)
    if model.dense != "project":
        backbone.set_dense_path(model.dense)
    adapter = ADAPTERS.create(model.adapter, model.adapter_options)
    with at_key("model.adapter"):
        adapter.apply(backbone)
    if model.grad_checkpointing:
        backbone.set_grad_checkpointing(True)
    return backbone, adapter


def build_model(cfg: RunConfig, class_names: Sequence[str] | None = None, *,
                thing_classes: Sequence[bool] | None = None,
                category_ids: Sequence[int] | None = None) -> TaskModel:
    """The ``cfg.task`` model from ``cfg.model`` (+ the task's preprocessing and inference options).

    Weights that are not loaded from a file (heads, adapters, un-pretrained backbones) are drawn from
    ``torch.manual_seed(cfg.seed)`` with the global generator left untouched, so building twice from the
    same config gives the same model: a model folder stores trainable weights only and rebuilds the rest.
    ``class_names`` is required by tasks with classes (all but retrieval).
    """
    from . import classification, detection, panoptic, retrieval, semantic  # noqa: F401  register builders

    if cfg.task not in MODELS:
        raise ConfigError(f"task {cfg.task!r} has no model that build_model can make; models exist for "
                          f"{', '.join(MODELS.names())}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        names = None if class_names is None else list(class_names)
        model = MODELS.build(cfg.task, cfg=cfg, class_names=names, thing_classes=thing_classes,
                             category_ids=category_ids)
    model.config = cfg
    return model


def require_class_names(task: str, class_names: Sequence[str] | None) -> list[str]:
    if not class_names:
        raise ConfigError(f"a {task} model needs class names: pass class_names=[...] (Python), --classes / "
                          f"--classes-file (umgkit predict), or data.class_names=<file> in the config.")
    return [str(n) for n in class_names]

