"""The parts every task model is built from: the adapted backbone, the class list, the dense build sequence.

This module sits below the task model modules (classification, semantic, ...) and `build_model`, so a model
class built in user code uses the same steps as the built-in ones and nothing imports back up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from torch import nn

from ..adapters import Adapter
from ..backbones import Backbone
from ..config import ConfigError, ModelConfig, RunConfig
from ..errors import WeightsError, at_key
from ..registry import ADAPTERS, BACKBONES, HEADS
from .base import TaskModel, inference_options
from .preprocess import Preprocess

__all__ = ["build_backbone", "check_prompt_head", "require_class_names", "build_dense_model"]

M = TypeVar("M", bound=TaskModel)


def build_backbone(model: ModelConfig, class_names: Sequence[str] | None = None) -> tuple[Backbone, Adapter]:
    """The frozen backbone named by ``model.backbone`` with ``model.adapter`` applied in place (given the
    task's ``class_names``, for methods with per-class parameters)."""
    with at_key("model.pretrained" if model.pretrained else "model.backbone", WeightsError):
        backbone = BACKBONES.create(model.backbone, pretrained=model.pretrained)
    if model.dense != "project":
        backbone.set_dense_path(model.dense)
    adapter = ADAPTERS.create(model.adapter, model.adapter_options)
    adapter.bind_class_names(None if class_names is None else [str(n) for n in class_names])
    with at_key("model.adapter"):
        adapter.apply(backbone)
    if model.grad_checkpointing:
        backbone.set_grad_checkpointing(True)
    return backbone, adapter


def check_prompt_head(backbone: nn.Module, head: nn.Module, model: ModelConfig) -> None:
    """A learned text prompt (coop, cocoop) trains only through a head that reads class features from it."""
    if getattr(backbone, "text_prompt", None) is not None and not hasattr(head, "class_features"):
        raise ConfigError(f"adapter '{model.adapter}' learns prompt tokens of the class names, which head "
                          f"'{model.head or '(the default)'}' never reads; set model.head=clip.",
                          key="model.head")


def require_class_names(task: str, class_names: Sequence[str] | None) -> list[str]:
    """``class_names`` as strings; none is a user error that says where to give them."""
    if not class_names:
        raise ConfigError(f"a {task} model needs class names: pass class_names=[...] (Python), --classes / "
                          f"--classes-file (umgkit predict), or data.class_names=<file> in the config.")
    return [str(n) for n in class_names]


def build_dense_model(model_cls: type[M], cfg: RunConfig, class_names: Sequence[str] | None, *,
                      default_head: str,
                      head_arguments: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
                      **metadata: Any) -> M:
    """The build sequence the dense models (semantic, panoptic, detection) share.

    Class names -> the task's inference options (``model_cls.inference_defaults`` out of
    ``cfg.task_options``) -> backbone + adapter -> ``model.head`` (``default_head`` when empty) with the
    class list and ``head_arguments(options)`` -> preprocessing with the ``eval_resize`` option -> the model,
    with per-class ``metadata`` (``thing_classes``, ``category_ids``).
    """
    names = require_class_names(model_cls.task, class_names)
    opts = inference_options(model_cls.inference_defaults, cfg.task_options)
    backbone, adapter = build_backbone(cfg.model, names)
    extra = head_arguments(opts) if head_arguments is not None else {}
    head = HEADS.create(cfg.model.head or default_head, cfg.model.head_options,
                        task=model_cls.head_task or model_cls.task, backbone=backbone,
                        num_classes=len(names), class_names=names, **extra)
    check_prompt_head(backbone, head, cfg.model)
    pre = Preprocess(cfg.data.image_size, backbone.image_mean, backbone.image_std,
                     resize=opts.get("eval_resize") or "none", inference=opts)
    return model_cls(backbone, head, preprocess=pre, class_names=names, adapter=adapter, **metadata)
