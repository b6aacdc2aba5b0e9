"""Panoptic model: Mask2Former-style queries -> panoptic segments, semantic scores and thing instances."""

from __future__ import annotations

from typing import Any

import torch

from ..config import Option, RunConfig
from ..registry import HEADS, MODELS
from ._panoptic_inference import instance_inference, panoptic_inference, semantic_inference
from .base import TaskModel, inference_options
from .build import build_backbone, require_class_names
from .preprocess import Preprocess

__all__ = ["INFERENCE_OPTIONS", "PanopticModel", "build_panoptic_model"]

INFERENCE_OPTIONS = {
    "eval_resize": Option("shorter", "eval image resize: shorter (side = image_size), square, or none"),
    "object_threshold": Option(0.8, "panoptic inference: min class score of a kept query"),
    "mask_threshold": Option(0.5, "panoptic inference: sigmoid threshold of a query's own mask"),
    "overlap_threshold": Option(0.8, "panoptic inference: min visible fraction of a query's mask"),
    "min_area": Option(0, "panoptic inference: segments with fewer pixels become VOID (0 keeps all)"),
}


class PanopticModel(TaskModel):
    """``forward((B, 3, H, W))`` -> the head's dict (``pred_logits (B, Q, K+1)``, ``pred_masks``, ``aux``)."""

    task = "panoptic"
    inference_defaults = INFERENCE_OPTIONS

    def forward(self, images: torch.Tensor) -> dict:
        return self.head(self.backbone.neck_input(images))

    @torch.no_grad()
    def segment(self, image: torch.Tensor, size: tuple[int, int]) -> dict[str, Any]:
        """One preprocessed image ``(3, h, w)`` -> ``{"panoptic": (ids (H, W), segments), "semantic":
        (K, H, W), "instances": {...}}`` at ``size``, all from the same forward pass (segment ids start at 1,
        0 = VOID; a segment's ``category_id`` is a label index into ``class_names``)."""
        out = self(image[None])
        logits, masks = out["pred_logits"][0], out["pred_masks"][0]
        isthing = self.thing_classes if self.thing_classes is not None else [True] * len(self.class_names)
        names = ("object_threshold", "mask_threshold", "overlap_threshold")
        thresholds = [float(self.option(k)) for k in names]
        pan = panoptic_inference(logits, masks, size, isthing, *thresholds, int(self.option("min_area")))
        return {"panoptic": pan, "semantic": semantic_inference(logits, masks, size),
                "instances": instance_inference(logits, masks, size, isthing)}


@MODELS.register("panoptic")
def build_panoptic_model(cfg: RunConfig, class_names: list[str] | None, *,
                         thing_classes: list[bool] | None = None, category_ids: list[int] | None = None,
                         **_: object) -> PanopticModel:
    """Backbone + adapter + ``model.head`` (default ``mask2former``) for panoptic segments.

    ``thing_classes`` default to all things; ``category_ids`` (COCO ids per label) to 1..K."""
    names = require_class_names("panoptic", class_names)
    backbone, adapter = build_backbone(cfg.model)
    head = HEADS.create(cfg.model.head or "mask2former", cfg.model.head_options, task="panoptic",
                        backbone=backbone, num_classes=len(names), class_names=names)
    opts = inference_options(INFERENCE_OPTIONS, cfg.task_options)
    pre = Preprocess(cfg.data.image_size, backbone.image_mean, backbone.image_std,
                     resize=opts["eval_resize"] or "none", inference=opts)
    things = list(thing_classes) if thing_classes is not None else [True] * len(names)
    ids = list(category_ids) if category_ids is not None else list(range(1, len(names) + 1))
    return PanopticModel(backbone, head, preprocess=pre, class_names=names, adapter=adapter,
                         thing_classes=things, category_ids=ids)
