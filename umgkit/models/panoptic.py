"""Panoptic model: Mask2Former-style queries -> panoptic segments, semantic scores and thing instances."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..config import Option, RunConfig
from ..registry import MODELS
from ._panoptic_inference import instance_inference, panoptic_inference, semantic_inference
from .base import TaskModel
from .inputs import PredictInput, PredictRequest
from .parts import build_dense_model
from .results import PanopticPrediction

__all__ = ["INFERENCE_OPTIONS", "PanopticModel"]

INFERENCE_OPTIONS = {
    "eval_resize": Option("shorter", "eval image resize: shorter (side = image_size), square, or none"),
    "object_threshold": Option(0.8, "panoptic inference: min class score of a kept query"),
    "mask_threshold": Option(0.5, "panoptic inference: sigmoid threshold of a query's own mask"),
    "overlap_threshold": Option(0.8, "panoptic inference: min visible fraction of a query's mask"),
    "min_area": Option(0, "panoptic inference: segments with fewer pixels become VOID (0 keeps all)"),
}


@MODELS.register("panoptic", doc="panoptic segmentation: COCO panoptic PNGs + JSON")
class PanopticModel(TaskModel):
    """``forward((B, 3, H, W))`` -> the head's dict (``pred_logits (B, Q, K+1)``, ``pred_masks``, ``aux``)."""

    task = "panoptic"
    head_task = "panoptic"
    inference_defaults = INFERENCE_OPTIONS
    prediction = PanopticPrediction
    pipeline_tag = "image-segmentation"

    @classmethod
    def from_config(cls, cfg: RunConfig, class_names: Sequence[str] | None = None, *,
                    thing_classes: Sequence[bool] | None = None, category_ids: Sequence[int] | None = None,
                    **_: object) -> PanopticModel:
        """Backbone + adapter + ``model.head`` (default ``mask2former``) for panoptic segments.

        ``thing_classes`` default to all things; ``category_ids`` (COCO ids per label) to 1..K."""
        count = len(class_names or [])
        things = list(thing_classes) if thing_classes is not None else [True] * count
        ids = list(category_ids) if category_ids is not None else list(range(1, count + 1))
        return build_dense_model(cls, cfg, class_names, default_head="mask2former", thing_classes=things,
                                 category_ids=ids)

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

    def predict(self, batch: list[PredictInput], request: PredictRequest) -> list[PanopticPrediction]:
        """Panoptic segments of each stored image, one image at a time (`segment`)."""
        out = []
        for item in batch:
            ids, segments = self.segment(item.image.to(request.device), item.rgb.shape[:2])["panoptic"]
            out.append(self.prediction(item.source, item.image_id, item.rgb, self.class_names,
                                       segment_ids=ids.cpu().numpy(), segments=segments,
                                       category_ids=list(self.category_ids)))
        return out
