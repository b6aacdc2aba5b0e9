"""`build_model`: the model class that ``cfg.task`` registered in `MODELS`, built from a run config and a
class list, reading no dataset.

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

from ..config import ConfigError, RunConfig
from ..registry import MODELS
from .base import TaskModel
from .parts import build_backbone

__all__ = ["build_backbone", "build_model", "model_class"]


def model_class(task: str) -> type[TaskModel]:
    """The `TaskModel` subclass registered in `MODELS` under ``task``.

    The built-in models register when `umgkit.models` is imported (this module is part of it); a task from
    user code registers when its module is imported (docs/extending.md).
    """
    if task not in MODELS:
        raise ConfigError(
            f"task {task!r} has no model class registered in umgkit.registry.MODELS (registered: "
            f"{', '.join(MODELS.names())}). A task of your own registers its TaskModel subclass with "
            "@MODELS.register(name) in a module that must be imported first: import it (Python), or declare "
            "it as an 'umgkit.plugins' entry point for the umgkit command (docs/extending.md).", key="task")
    cls = MODELS.get(task)
    if not (isinstance(cls, type) and issubclass(cls, TaskModel)) or cls.task != task:
        found = f"class {cls.__name__} with task = {cls.task!r}" if isinstance(cls, type) else repr(cls)
        raise TypeError(f"MODELS[{task!r}] must be a TaskModel subclass whose `task` is {task!r}; found "
                        f"{found}. Register the class itself and set task = {task!r} on it.")
    return cls


def build_model(cfg: RunConfig, class_names: Sequence[str] | None = None, *,
                thing_classes: Sequence[bool] | None = None,
                category_ids: Sequence[int] | None = None) -> TaskModel:
    """The ``cfg.task`` model (`model_class`) from ``cfg.model`` (+ the task's preprocessing and inference
    options), through the class's ``from_config``.

    Weights that are not loaded from a file (heads, adapters, un-pretrained backbones) are drawn from
    ``torch.manual_seed(cfg.seed)`` with the global generator left untouched, so building twice from the
    same config gives the same model: a model folder stores trainable weights only and rebuilds the rest.
    ``class_names`` is required by tasks with classes (all but retrieval).
    """
    cls = model_class(cfg.task)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        names = None if class_names is None else list(class_names)
        model = cls.from_config(cfg, names, thing_classes=thing_classes, category_ids=category_ids)
    model.config = cfg
    return model
