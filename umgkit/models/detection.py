"""Detection model: ViTDet pyramid + R-CNN head; boxes (absolute XYXY pixels of the stored image), scores,
labels and, with a mask branch, per-instance mask probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..config import Option, RunConfig
from ..registry import MODELS
from .base import TaskModel
from .inputs import PredictInput, PredictRequest, same_size_groups, stack_images
from .parts import build_dense_model
from .results import DetectionPrediction

__all__ = ["INFERENCE_OPTIONS", "DetectionModel"]

INFERENCE_OPTIONS = {
    "masks": Option(False, "train and evaluate the mask branch (Mask R-CNN; mask AP as mask_*)"),
    "eval_resize": Option("shorter", "eval image resize: shorter (side to image_size), square or none"),
    "mask_threshold": Option(0.5, "mask probability above which a pixel belongs to a predicted instance"),
    "vis_score": Option(0.5, "score threshold for the detections drawn in pictures (vis/ and predict "
                             "overlays); every detection is still saved and evaluated"),
}


@MODELS.register("detection", doc="detection (+ instance masks): COCO results JSON")
class DetectionModel(TaskModel):
    """``forward(images, targets=None, original_sizes=None)``: images ``(B, 3, H, W)`` or a list of
    ``(3, H_i, W_i)``; the loss dict in training mode, per-image detections (``boxes``, ``scores``,
    ``labels``, [``masks`` (N, 1, H, W) probabilities]) at ``original_sizes`` in eval mode."""

    task = "detection"
    head_task = "detection"
    inference_defaults = INFERENCE_OPTIONS
    prediction = DetectionPrediction
    pipeline_tag = "object-detection"

    @classmethod
    def from_config(cls, cfg: RunConfig, class_names: Sequence[str] | None = None, *,
                    category_ids: Sequence[int] | None = None, **_: object) -> DetectionModel:
        """Backbone + adapter + ``model.head`` (default ``vitdet_rcnn``) for boxes and instance masks.

        ``task_options.masks`` adds the mask branch; ``category_ids`` (COCO ids per label) default to 1..K."""
        count = len(class_names or [])
        ids = list(category_ids) if category_ids is not None else list(range(1, count + 1))
        return build_dense_model(cls, cfg, class_names, default_head="vitdet_rcnn", category_ids=ids,
                                 head_arguments=lambda opts: {"masks": bool(opts["masks"])})

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

    def predict(self, batch: list[PredictInput], request: PredictRequest) -> list[DetectionPrediction]:
        """Boxes, scores, labels (and masks) at each stored image's size."""
        out = []
        for group in same_size_groups(batch):
            sizes = [tuple(item.rgb.shape[:2]) for item in group]
            detections = self(stack_images(group, request.device), original_sizes=sizes)
            for item, det in zip(group, detections, strict=True):
                masks = self.binary_masks(det)
                out.append(self.prediction(
                    item.source, item.image_id, item.rgb, self.class_names, boxes=det["boxes"].cpu().numpy(),
                    scores=det["scores"].cpu().numpy(), label_ids=det["labels"].cpu().numpy(),
                    masks=None if masks is None else masks.cpu().numpy(),
                    category_ids=list(self.category_ids), draw_threshold=float(self.option("vis_score"))))
        return out
