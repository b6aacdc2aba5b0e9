"""Detection model: ViTDet pyramid + R-CNN head; boxes (absolute XYXY pixels of the stored image), scores,
labels and, with a mask branch, per-instance mask probabilities."""

from __future__ import annotations

import torch

from ..config import Option, RunConfig
from ..registry import HEADS, MODELS
from .base import TaskModel, inference_options
from .build import build_backbone, require_class_names
from .preprocess import Preprocess

__all__ = ["INFERENCE_OPTIONS", "DetectionModel", "build_detection_model"]

INFERENCE_OPTIONS = {
    "masks": Option(False, "train and evaluate the mask branch (Mask R-CNN; mask AP as mask_*)"),
    "eval_resize": Option("shorter", "eval image resize: shorter (side to image_size), square or none"),
    "mask_threshold": Option(0.5, "mask probability above which a pixel belongs to a predicted instance"),
    "vis_score": Option(0.5, "score threshold for the detections drawn in pictures (vis/ and predict "
                             "overlays); every detection is still saved and evaluated"),
}


class DetectionModel(TaskModel):
    """``forward(images, targets=None, original_sizes=None)``: images ``(B, 3, H, W)`` or a list of
    ``(3, H_i, W_i)``; the loss dict in training mode, per-image detections (``boxes``, ``scores``,
    ``labels``, [``masks`` (N, 1, H, W) probabilities]) at ``original_sizes`` in eval mode."""

    task = "detection"
    inference_defaults = INFERENCE_OPTIONS

    def forward(self, images, targets: list[dict] | None = None, original_sizes=None):
        batch = self.head.batch(images)
        return self.head(self.backbone.neck_input(batch.tensors), batch, targets, original_sizes)

    @property
    def with_masks(self) -> bool:
        return bool(getattr(self.head, "with_masks", False))

    def binary_masks(self, detection: dict) -> torch.Tensor | None:
        """``(N, H, W)`` bool instance masks at ``inference.mask_threshold``; None without a mask branch."""
        if not self.with_masks or "masks" not in detection:
            return None
        return detection["masks"][:, 0] > float(self.option("mask_threshold"))


@MODELS.register("detection")
def build_detection_model(cfg: RunConfig, class_names: list[str] | None, *,
                          category_ids: list[int] | None = None, **_: object) -> DetectionModel:
    """Backbone + adapter + ``model.head`` (default ``vitdet_rcnn``) for boxes and instance masks.

    ``task_options.masks`` adds the mask branch; ``category_ids`` (COCO ids per label) default to 1..K."""
    names = require_class_names("detection", class_names)
    opts = inference_options(INFERENCE_OPTIONS, cfg.task_options)
    backbone, adapter = build_backbone(cfg.model)
    head = HEADS.create(cfg.model.head or "vitdet_rcnn", cfg.model.head_options, task="detection",
                        backbone=backbone, num_classes=len(names), class_names=names,
                        masks=bool(opts["masks"]))
    pre = Preprocess(cfg.data.image_size, backbone.image_mean, backbone.image_std,
                     resize=opts["eval_resize"] or "none", inference=opts)
    ids = list(category_ids) if category_ids is not None else list(range(1, len(names) + 1))
    return DetectionModel(backbone, head, preprocess=pre, class_names=names, adapter=adapter,
                          category_ids=ids)
