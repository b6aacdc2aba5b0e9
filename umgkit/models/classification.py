"""Classification model: ``encode_image (B, F) -> head -> logits (B, C)``; predictions are top-k labels."""

from __future__ import annotations

import torch
from torch import nn

from ..config import RunConfig
from ..registry import HEADS, MODELS
from .base import TaskModel
from .build import build_backbone, require_class_names
from .preprocess import Preprocess

__all__ = ["ClassificationModel", "build_classification_model"]


class ClassificationModel(TaskModel):
    """``forward(images=(B, 3, H, W))`` or ``forward(features=(B, F))`` (cached features skip the
    backbone) -> logits ``(B, C)``."""

    task = "classification"

    def forward(self, images: torch.Tensor | None = None,
                features: torch.Tensor | None = None) -> torch.Tensor:
        if features is None:
            if images is None:
                raise ValueError("ClassificationModel needs images or features.")
            features = self.backbone.encode_image(images)
        return self.head(features)


@MODELS.register("classification")
def build_classification_model(cfg: RunConfig, class_names: list[str] | None,
                               **_: object) -> ClassificationModel:
    """Backbone + adapter + ``model.head`` (default ``linear``); CLIP-style centre-crop preprocessing."""
    names = require_class_names("classification", class_names)
    backbone, adapter = build_backbone(cfg.model)
    head: nn.Module = HEADS.create(cfg.model.head or "linear", cfg.model.head_options, task="classification",
                                  backbone=backbone, num_classes=len(names), class_names=names)
    head.requires_grad_(True)
    if hasattr(head, "logit_scale"):
        head.logit_scale.requires_grad_(bool(cfg.model.head_options.get("learn_scale", True)))
    pre = Preprocess(cfg.data.image_size, backbone.image_mean, backbone.image_std, resize="shorter_crop")
    return ClassificationModel(backbone, head, preprocess=pre, class_names=names, adapter=adapter)
