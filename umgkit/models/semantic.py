"""Semantic segmentation model: ``(B, 3, H, W) -> logits (B, K, H, W)``, whole-image or sliding-window."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import Option, RunConfig
from ..registry import HEADS, MODELS
from ._sliding import slide_inference, whole_inference
from .base import TaskModel, inference_options
from .build import build_backbone, require_class_names
from .preprocess import Preprocess

__all__ = ["INFERENCE_OPTIONS", "SemanticModel", "build_semantic_model"]

INFERENCE_OPTIONS = {
    "inference": Option("whole", "evaluation: whole (one forward per image) or slide (sliding windows)"),
    "window": Option(None, "slide: window side (int or [h, w]); null = data.image_size"),
    "stride": Option(None, "slide: window stride (int or [h, w]); null = 2/3 of the window"),
    "pad": Option(False, "slide: pad images smaller than the window instead of shrinking the window"),
    "eval_resize": Option("shorter", "evaluation image resize: shorter (shorter side to data.image_size), "
                                     "square, or none (stored size); labels always keep their stored size"),
}


class SemanticModel(TaskModel):
    """``forward((B, 3, H, W)) -> logits (B, K, H, W)``; `segment` adds the configured inference mode."""

    task = "semantic"
    inference_defaults = INFERENCE_OPTIONS

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


@MODELS.register("semantic")
def build_semantic_model(cfg: RunConfig, class_names: list[str] | None, **_: object) -> SemanticModel:
    """Backbone + adapter + ``model.head`` (default ``semantic_fpn``) for per-pixel class logits.

    Inputs are resized as ``task_options.eval_resize`` says; ``task_options.inference`` picks whole or
    sliding-window inference."""
    names = require_class_names("semantic", class_names)
    backbone, adapter = build_backbone(cfg.model)
    head = HEADS.create(cfg.model.head or "semantic_fpn", cfg.model.head_options, task="semantic",
                        backbone=backbone, num_classes=len(names), class_names=names)
    opts = inference_options(INFERENCE_OPTIONS, cfg.task_options)
    pre = Preprocess(cfg.data.image_size, backbone.image_mean, backbone.image_std,
                     resize=opts["eval_resize"] or "none", inference=opts)
    return SemanticModel(backbone, head, preprocess=pre, class_names=names, adapter=adapter)
