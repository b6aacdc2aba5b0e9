"""Retrieval model: image and text embeddings in one space; predictions rank images for texts and back."""

from __future__ import annotations

import torch

from ..config import RunConfig
from ..registry import HEADS, MODELS
from .base import TaskModel
from .build import build_backbone
from .preprocess import Preprocess

__all__ = ["RetrievalModel", "build_retrieval_model"]


class RetrievalModel(TaskModel):
    """``forward(images=(B, 3, H, W), texts=list[str] of length M)`` -> ``{"image": (B, D), "text": (M, D),
    "logit_scale": ()}`` (embeddings L2-normalised; either input may be omitted)."""

    task = "retrieval"

    def forward(self, images: torch.Tensor | None = None, texts: list[str] | None = None) -> dict:
        out: dict[str, torch.Tensor] = {"logit_scale": self.head.logit_scale}
        if images is not None:
            out["image"] = self.head.image(self.backbone.encode_image(images))
        if texts is not None:
            out["text"] = self.head.text(self.backbone.encode_text(list(texts)))
        return out


@MODELS.register("retrieval")
def build_retrieval_model(cfg: RunConfig, class_names: list[str] | None = None,
                          **_: object) -> RetrievalModel:
    """Backbone + adapter + ``model.head`` (default ``contrastive``); centre-crop preprocessing."""
    backbone, adapter = build_backbone(cfg.model)
    head = HEADS.create(cfg.model.head or "contrastive", cfg.model.head_options, task="retrieval",
                        backbone=backbone)
    pre = Preprocess(cfg.data.image_size, backbone.image_mean, backbone.image_std, resize="shorter_crop")
    return RetrievalModel(backbone, head, preprocess=pre, adapter=adapter)
