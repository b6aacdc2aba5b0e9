"""``pixel_text``: zero-shot semantic segmentation from a dual encoder alone, no trained weights.

Scores the backbone's text-aligned pixel embeddings (``embed_pixels``, ``(B, D, h, w)``) against the class
names' prompt embeddings: ``logits = exp(logit_scale) * cos(pixel, text_k)`` at the patch grid (the model
up-samples them). With a pretrained ``umg:`` backbone this names "where is X" for any typed X; it is what
``umgkit predict CONFIG --classes ...`` runs for a zero-shot semantic config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..registry import HEADS
from .classification import DEFAULT_LOGIT_SCALE
from .segmentation import encode_class_names

__all__ = ["PixelTextHead", "PixelTextOptions", "build_pixel_text_head"]


class PixelTextHead(nn.Module):
    """``(B, D, h, w)`` L2-normalised pixel embeddings -> logits ``(B, K, h, w)``; no trainable parameters."""

    classifier_kind = "pixel_text"
    input_kind = "pixels"  # SemanticModel feeds it backbone.embed_pixels instead of backbone.dense

    def __init__(self, *, backbone: nn.Module, class_names: Sequence[str],
                 templates: Sequence[str] = ("a photo of a {}.",),
                 logit_scale: float = DEFAULT_LOGIT_SCALE) -> None:
        super().__init__()
        if not getattr(backbone, "has_text", False):
            raise ValueError(f"head 'pixel_text' needs a dual encoder with a text tower; "
                             f"{getattr(backbone, 'name', type(backbone).__name__)} has none.")
        self._backbone = [backbone]  # a plain reference: the backbone is the model's, not the head's
        self.templates = tuple(templates)
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ValueError(f"templates {list(self.templates)}: each needs a '{{}}' for the class name.")
        self.scale = float(logit_scale)
        self.register_buffer("text_embeddings", None, persistent=False)
        self.set_class_names(class_names)

    @property
    def num_classes(self) -> int:
        return int(self.text_embeddings.shape[0])

    def set_class_names(self, names: Sequence[str]) -> None:
        if not names:
            raise ValueError("set_class_names: give at least one class name.")
        self.text_embeddings = encode_class_names(self._backbone[0].encode_text, list(names), self.templates)
        self.class_names = list(names)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        text = self.text_embeddings.to(device=pixels.device, dtype=pixels.dtype)  # (K, D)
        return torch.exp(torch.tensor(self.scale)) * torch.einsum("bdhw,kd->bkhw", pixels, text)


@dataclass
class PixelTextOptions:
    templates: tuple[str, ...] = ("a photo of a {}.",)  # prompts with {} for the class name, averaged
    logit_scale: float = DEFAULT_LOGIT_SCALE  # log inverse temperature of the cosine logits


@HEADS.register("pixel_text", tasks=("semantic",), options=PixelTextOptions)
def build_pixel_text_head(backbone: nn.Module, num_classes: int | None = None,
                          class_names: Sequence[str] | None = None,
                          options: PixelTextOptions | None = None) -> PixelTextHead:
    """Zero-shot segmentation by cosine to class-name text embeddings; nothing trains.

    The backbone's text-aligned pixel embeddings are scored against the class names' prompt embeddings.
    """
    options = options or PixelTextOptions()
    if not class_names:
        raise ValueError("head 'pixel_text' needs class names (the task passes the dataset's; predict takes "
                         "--classes).")
    return PixelTextHead(backbone=backbone, class_names=class_names, templates=options.templates,
                         logit_scale=options.logit_scale)
