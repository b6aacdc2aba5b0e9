"""``clip``: CLIP's own classifier, with class text features computed through the (adapted) text tower.

``logits = exp(logit_scale) * normalize(f) @ t_c`` for image features ``f (B, F)`` and class features
``t_c (D,)``. Unlike ``text_init`` (rows computed once and then trained as free weights), the rows are the
text tower's output at every training forward, so methods that act in the text tower train through it:
CoOp / CoCoOp (learned prompt tokens, `umgkit.adapters.coop`) and CLIP-LoRA (LoRA in both towers). With
``adapter: frozen`` it is zero-shot CLIP. In eval mode the rows are computed once and kept until the model
trains again or the class names change. It has no parameters of its own (the logit scale is fixed), so
any class names can be given at inference: they are encoded the same way.

A backbone whose adapter installed a ``text_prompt`` module (CoOp, CoCoOp) gets its class features from
that module: ``text_prompt.class_features(backbone, names, image_features)`` returns ``(C, D)`` or, for
image-conditioned prompts, ``(B, C, D)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..registry import HEADS
from .classification import _backbone_logit_scale, resolve_templates

__all__ = ["CLIPHead", "CLIPOptions", "build_clip_head", "class_prompt_features"]


def class_prompt_features(backbone: nn.Module, names: Sequence[str], templates: str | Sequence[str]
                          ) -> torch.Tensor:
    """``(C, D)``: per class the normalised mean of its prompts' embeddings (gradients kept)."""
    prompts = resolve_templates(templates)
    texts = [p(str(n).replace("_", " ")) for n in names for p in prompts]
    emb = backbone.encode_text(texts).float().reshape(len(names), len(prompts), -1)  # (C, T, D)
    return F.normalize(F.normalize(emb, dim=-1).mean(dim=1), dim=-1)


class CLIPHead(nn.Module):
    """See the module docstring. The backbone is a plain reference (it is the model's, not the head's)."""

    classifier_kind = "clip"

    def __init__(self, *, backbone: nn.Module, class_names: Sequence[str],
                 templates: str | Sequence[str] = ("a photo of a {}.",), logit_scale: float) -> None:
        super().__init__()
        if not getattr(backbone, "has_text", False):
            raise ConfigError(f"head 'clip' needs a backbone with a text tower; "
                              f"{getattr(backbone, 'name', type(backbone).__name__)} has none. Use "
                              "model.head=linear, or a joint-space backbone (umg:tiny, openclip:ViT-B-16).",
                              key="model.head")
        resolve_templates(templates)  # checked now, not at the first forward
        self._backbone = [backbone]
        self.templates = templates if isinstance(templates, str) else tuple(templates)
        self.scale = float(logit_scale)
        self.class_names = [str(n) for n in class_names]
        self._cached: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def set_class_names(self, names: Sequence[str]) -> None:
        prompt = getattr(self._backbone[0], "text_prompt", None)
        if prompt is not None:
            prompt.check_class_names(list(names))
        self.class_names = [str(n) for n in names]
        self._cached = None

    def train(self, mode: bool = True) -> CLIPHead:
        self._cached = None  # the text side may change while training
        return super().train(mode)

    def class_features(self, image_features: torch.Tensor | None = None) -> torch.Tensor:
        """``(C, D)`` class text features, or ``(B, C, D)`` for an image-conditioned prompt."""
        backbone = self._backbone[0]
        prompt = getattr(backbone, "text_prompt", None)
        if prompt is not None and prompt.conditioned:
            return prompt.class_features(backbone, self.class_names, image_features)
        if self._cached is not None and not self.training:
            return self._cached
        if prompt is not None:
            rows = prompt.class_features(backbone, self.class_names)
        else:
            rows = class_prompt_features(backbone, self.class_names, self.templates)
        if not self.training:
            self._cached = rows.detach()
        return rows

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        f = F.normalize(features.float(), dim=-1)  # (B, D)
        text = self.class_features(f).to(f.device)
        logits = f @ text.t() if text.dim() == 2 else torch.einsum("bd,bcd->bc", f, text)
        return math.exp(self.scale) * logits


@dataclass
class CLIPOptions:
    templates: str | tuple[str, ...] = ("a photo of a {}.",)  # prompts with {} ("openai", "simple", or own)
    logit_scale: float | str = "backbone"  # log inverse temperature; "backbone" = its own (CLIP: ln 100)


@HEADS.register("clip", tasks=("classification",), options=CLIPOptions)
def build_clip_head(backbone: nn.Module, num_classes: int, class_names: Sequence[str] | None = None,
                    options: CLIPOptions | None = None) -> CLIPHead:
    """CLIP's classifier over live class text features: zero-shot with ``adapter: frozen``, and the head of
    the text-side methods (coop, cocoop, clip_lora). The logit scale is fixed (never trained)."""
    options = options or CLIPOptions()
    names = list(class_names or [])
    if len(names) != int(num_classes):
        raise ValueError(f"head 'clip' got {len(names)} class names for num_classes={num_classes}.")
    scale = options.logit_scale
    if scale == "backbone":
        scale = _backbone_logit_scale(backbone)
        scale = math.log(100.0) if scale is None else scale
    elif isinstance(scale, str):
        raise ConfigError(f"head_options.logit_scale={scale!r}: give a number (log inverse temperature) or "
                          "'backbone'.", key="model.head_options.logit_scale")
    return CLIPHead(backbone=backbone, class_names=names, templates=options.templates,
                    logit_scale=float(scale))
