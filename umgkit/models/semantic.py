"""Semantic segmentation model: ``(B, 3, H, W) -> logits (B, K, H, W)``, whole-image or sliding-window."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..config import Option, RunConfig
from ..registry import MODELS
from ._sliding import slide_inference, whole_inference
from .base import TaskModel
from .inputs import PredictInput, PredictRequest, same_size_groups, stack_images
from .parts import build_dense_model
from .results import SemanticPrediction

__all__ = ["INFERENCE_OPTIONS", "SemanticModel"]

INFERENCE_OPTIONS = {
    "inference": Option("whole", "evaluation: whole (one forward per image) or slide (sliding windows)"),
    "window": Option(None, "slide: window side (int or [h, w]); null = data.image_size"),
    "stride": Option(None, "slide: window stride (int or [h, w]); null = 2/3 of the window"),
    "pad": Option(False, "slide: pad images smaller than the window instead of shrinking the window"),
    "eval_resize": Option("shorter", "evaluation image resize: shorter (shorter side to data.image_size), "
                                     "square, or none (stored size); labels always keep their stored size"),
}


@MODELS.register("semantic", doc="semantic segmentation: a class per pixel (label PNGs)")
class SemanticModel(TaskModel):
    """``forward((B, 3, H, W)) -> logits (B, K, H, W)``; `segment` adds the configured inference mode."""

    task = "semantic"
    head_task = "semantic"
    inference_defaults = INFERENCE_OPTIONS
    prediction = SemanticPrediction
    pipeline_tag = "image-segmentation"

    @classmethod
    def from_config(cls, cfg: RunConfig, class_names: Sequence[str] | None = None,
                    **_: object) -> SemanticModel:
        """Backbone + adapter + ``model.head`` (default ``semantic_fpn``) for per-pixel class logits.

        Inputs are resized as ``task_options.eval_resize`` says; ``task_options.inference`` picks whole or
        sliding-window inference."""
        return build_dense_model(cls, cfg, class_names, default_head="semantic_fpn")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if getattr(self.head, "input_kind", "dense") == "pixels":  # zero-shot: text-aligned pixel embeddings
            feats = self.backbone.embed_pixels(images)
        else:
            feats = self.backbone.neck_input(images)
        logits = self.head(feats)  # (B, K, h, w)
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)

    def segment(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Logits ``(B, K, *size)`` for preprocessed images ``(B, 3, h, w)`` (bilinear on logits to ``size``,
        the stored image size, as mmseg evaluates)."""
        if self.option("inference") == "slide":
            window = self.option("window") or self.preprocess.image_size
            first = int(window) if isinstance(window, int) else int(window[0])
            stride = self.option("stride") or max(1, (2 * first) // 3)
            logits = slide_inference(self, images, window, stride, pad=bool(self.option("pad")))
        else:
            logits = whole_inference(self, images)
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits.float(), size=tuple(size), mode="bilinear", align_corners=False)
        return logits

    def predict(self, batch: list[PredictInput], request: PredictRequest) -> list[SemanticPrediction]:
        """A class index per pixel of each stored image (`segment`, then argmax)."""
        out = []
        for group in same_size_groups(batch):
            size = group[0].rgb.shape[:2]
            labels = self.segment(stack_images(group, request.device), size).argmax(1).cpu().numpy()
            out += [self.prediction(item.source, item.image_id, item.rgb, self.class_names, label_map=lab)
                    for item, lab in zip(group, labels, strict=True)]
        return out
