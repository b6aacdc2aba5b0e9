"""CLIP-Adapter (Gao et al., 2021): a residual bottleneck MLP on the frozen CLIP feature.

``f' = ratio * MLP(f) + (1 - ratio) * f`` with ``MLP = Linear(D, D/r, bias=False) -> ReLU ->
Linear(D/r, D, bias=False) -> ReLU``; logits ``s * normalize(f') normalize(T')^T``. ``on`` picks where the
residual MLP acts: the image feature (the paper's best setting), the class text rows ``T`` (``T'`` =
the same residual map of each row), or both (two MLPs). ``ratio = 0`` is zero-shot CLIP exactly.

The text rows are re-encoded for new class names (`set_class_names`), so a trained CLIP-Adapter names
classes it never saw: the adapter is a map of the joint space, not of the classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import HEADS
from ._fewshot import cosine_logits, fewshot_logit_scale, fewshot_text_rows
from .classification import text_classifier_weights

__all__ = ["ClipAdapterHead", "ClipAdapterOptions", "ResidualMLP", "build_clip_adapter"]

_SIDES = ("image", "text", "both")


class ResidualMLP(nn.Module):
    """``x -> ratio * relu(W2 relu(W1 x)) + (1 - ratio) * x``: ``2 * D * D/reduction`` parameters."""

    def __init__(self, dim: int, reduction: int, ratio: float) -> None:
        super().__init__()
        hidden = max(1, dim // reduction)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, dim, bias=False), nn.ReLU(inplace=True))
        self.ratio = float(ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ratio * self.mlp(x) + (1.0 - self.ratio) * x


class ClipAdapterHead(nn.Module):
    """``(B, D) -> (B, C)`` cosine classifier after the residual MLP(s) (see the module docstring)."""

    classifier_kind = "text_init"  # open vocabulary: new names are re-encoded by the text tower

    def __init__(self, *, text: torch.Tensor, log_scale: torch.Tensor, backbone: nn.Module | None = None,
                 templates: str | Sequence[str] = "simple", reduction: int = 4, ratio: float = 0.2,
                 on: str = "image") -> None:
        super().__init__()
        dim = int(text.shape[1])
        self.register_buffer("text", text.detach().clone().float(), persistent=False)  # (C, D)
        self.register_buffer("log_scale", log_scale.detach().clone().float(), persistent=False)
        self.image_adapter = ResidualMLP(dim, reduction, ratio) if on in ("image", "both") else None
        self.text_adapter = ResidualMLP(dim, reduction, ratio) if on in ("text", "both") else None
        self._backbone = [backbone]  # a list hides it from nn.Module's submodule registration
        self.templates = templates

    def set_class_names(self, names: Sequence[str]) -> None:
        """Re-encode the text rows for ``names``; the trained MLP(s) apply to them unchanged."""
        if self._backbone[0] is None:
            raise ValueError("this clip_adapter head was built without its backbone; it cannot encode new "
                             "names.")
        rows = text_classifier_weights(self._backbone[0], list(names), self.templates)
        self.text = rows.to(self.text.device)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.image_adapter is not None:
            features = self.image_adapter(features)
        rows = self.text if self.text_adapter is None else self.text_adapter(self.text)
        return cosine_logits(self.log_scale, features, rows)


@dataclass
class ClipAdapterOptions:
    reduction: int = 4  # bottleneck: hidden width = D / reduction
    ratio: float = 0.2  # residual blend: ratio * MLP(f) + (1 - ratio) * f (0 = zero-shot)
    on: str = "image"  # where the residual MLP acts: image, text (the class rows) or both (two MLPs)
    templates: str | tuple[str, ...] = "simple"  # "openai" (80 prompts), "simple" (18), or prompts with {}
    logit_scale: float | str | None = "backbone"  # fixed; "backbone" = its own (else ln 100), null = ln 100


@HEADS.register("clip_adapter", tasks=("classification",), options=ClipAdapterOptions)
def build_clip_adapter(backbone: nn.Module, num_classes: int, class_names: Sequence[str] | None = None,
                       options: ClipAdapterOptions | None = None) -> ClipAdapterHead:
    """CLIP-Adapter: residual bottleneck MLP on the image feature and/or the class text rows.

    Example (``adapter: frozen``):
        model: {backbone: "openclip:ViT-B-16", adapter: frozen, head: clip_adapter,
                head_options: {reduction: 4, ratio: 0.2, on: image}}
    """
    options = options or ClipAdapterOptions()
    if options.on not in _SIDES:
        raise ConfigError(f"head_options.on={options.on!r} for head 'clip_adapter': use one of "
                          f"{', '.join(_SIDES)}.")
    if int(options.reduction) < 1 or not 0.0 <= float(options.ratio) <= 1.0:
        raise ConfigError(f"head 'clip_adapter': reduction must be >= 1 (got {options.reduction}) and ratio "
                          f"in [0, 1] (got {options.ratio}); the paper uses reduction 4, ratio 0.2.")
    text = fewshot_text_rows(backbone, class_names, num_classes, options.templates, "clip_adapter")
    return ClipAdapterHead(text=text, backbone=backbone, templates=options.templates,
                           reduction=int(options.reduction), ratio=float(options.ratio), on=options.on,
                           log_scale=fewshot_logit_scale(backbone, options.logit_scale, "clip_adapter"))
