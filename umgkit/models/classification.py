"""Classification model: ``encode_image (B, F) -> head -> logits (B, C)``; predictions are top-k labels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..config import RunConfig
from ..registry import HEADS, MODELS
from .base import TaskModel
from .inputs import PredictInput, PredictRequest, stack_images
from .parts import build_backbone, check_prompt_head, require_class_names
from .preprocess import Preprocess
from .results import ClassificationPrediction

__all__ = ["ClassificationModel"]


@MODELS.register("classification", doc="image classification: top-k labels per image (predictions.jsonl)")
class ClassificationModel(TaskModel):
    """``forward(images=(B, 3, H, W))`` or ``forward(features=(B, F))`` (cached features skip the
    backbone) -> logits ``(B, C)``."""

    task = "classification"
    head_task = "classification"
    prediction = ClassificationPrediction
    pipeline_tag = "image-classification"

    def forward(self, images: torch.Tensor | None = None,
                features: torch.Tensor | None = None) -> torch.Tensor:
        if features is None:
            if images is None:
                raise ValueError("ClassificationModel needs images or features.")
            features = self.backbone.encode_image(images)
        return self.head(features)

    @classmethod
    def from_config(cls, cfg: RunConfig, class_names: Sequence[str] | None = None,
                    **_: object) -> ClassificationModel:
        """Backbone + adapter + ``model.head`` (default ``linear``); CLIP-style centre-crop preprocessing."""
        names = require_class_names(cls.task, class_names)
        backbone, adapter = build_backbone(cfg.model, names)
        head: nn.Module = HEADS.create(cfg.model.head or "linear", cfg.model.head_options,
                                      task=cls.head_task or cls.task, backbone=backbone,
                                      num_classes=len(names), class_names=names)
        check_prompt_head(backbone, head, cfg.model)
        head.requires_grad_(True)
        if hasattr(head, "logit_scale"):
            head.logit_scale.requires_grad_(bool(cfg.model.head_options.get("learn_scale", True)))
        pre = Preprocess(cfg.data.image_size, backbone.image_mean, backbone.image_std, resize="shorter_crop")
        return cls(backbone, head, preprocess=pre, class_names=names, adapter=adapter)

    def predict(self, batch: list[PredictInput], request: PredictRequest) -> list[ClassificationPrediction]:
        """The ``request.top_k`` labels with the highest softmax probability, best first."""
        names = self.class_names
        probs = self(images=stack_images(batch, request.device)).float().softmax(-1).cpu()  # (B, C)
        top = probs.topk(min(request.top_k, probs.shape[1]), dim=1)
        return [self.prediction(item.source, item.image_id, item.rgb, names,
                                labels=[names[i] for i in idx.tolist()], label_ids=idx.tolist(),
                                scores=[round(v, 6) for v in val.tolist()])
                for item, idx, val in zip(batch, top.indices, top.values, strict=True)]
