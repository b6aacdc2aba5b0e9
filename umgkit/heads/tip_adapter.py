"""Tip-Adapter and Tip-Adapter-F (Zhang et al., 2022): zero-shot CLIP plus a key-value cache of the shots.

``logits = s * f T^T + alpha * exp(-beta * (1 - f K^T)) L`` for L2-normalised features ``f (B, D)``:
``T (C, D)`` the fixed text classifier, ``s = exp(logit_scale)``, keys ``K (N, D)`` the normalised features
of the N few-shot training images and values ``L (N, C)`` their one-hot labels. ``alpha`` weighs the cache
against zero-shot, ``beta`` sharpens the affinities. The cache term is not multiplied by ``s`` (as in the
paper: ``100 * f T^T + alpha * A L``).

- ``tip_adapter``: training-free; keys and labels are persistent buffers, nothing has a gradient.
- ``tip_adapter_f``: the keys are an ``nn.Parameter`` fine-tuned by the run (``N * D`` parameters); the
  values stay fixed.

The cache is filled from data: the classification task calls `TipAdapterHead.init_from_features` with the
train split's features (eval transform) before training. The values are kept as the label of each key
(``labels (N,)``, int64) and ``A L`` is a scatter-add over them: the same sum as the one-hot product without
an ``(N, C)`` matrix. Both buffers are saved in the model folder; `fit_state_shapes` sizes an empty cache to
the stored one before the tensors are copied back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import HEADS
from ._fewshot import check_own_classes, cosine_logits, fewshot_logit_scale, fewshot_text_rows
from .classification import feature_dim

__all__ = ["TipAdapterHead", "TipAdapterOptions", "build_tip_adapter", "build_tip_adapter_f"]


class TipAdapterHead(nn.Module):
    """``(B, F) -> (B, C)``: zero-shot logits plus the cache logits (see the module docstring).

    Built with an empty cache (``N = 0``: it then predicts zero-shot) until `init_from_features` fills it.
    """

    classifier_kind = "few_shot"  # rows tied to its own classes: no new names, no relabelling

    def __init__(self, *, text: torch.Tensor, class_names: Sequence[str], log_scale: torch.Tensor,
                 alpha: float = 1.0, beta: float = 5.5, train_keys: bool = False,
                 name: str = "tip_adapter") -> None:
        super().__init__()
        self.alpha, self.beta, self.train_keys, self.name = float(alpha), float(beta), bool(train_keys), name
        self.class_names = list(class_names)
        self.register_buffer("text", text.detach().clone().float(), persistent=False)  # (C, D), rebuilt
        self.register_buffer("log_scale", log_scale.detach().clone().float(), persistent=False)
        self._set_cache(torch.zeros(0, text.shape[1]), torch.zeros(0, dtype=torch.long))

    def _set_cache(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        device = self.text.device
        keys, labels = keys.detach().float().to(device), labels.detach().long().to(device)
        if self.train_keys:
            self.keys = nn.Parameter(keys)  # (N, D)
        else:
            self.register_buffer("keys", keys)
        self.register_buffer("labels", labels)  # (N,) class index of each key: the one-hot values L

    @property
    def num_keys(self) -> int:
        return int(self.keys.shape[0])

    @torch.no_grad()
    def init_from_features(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Fill the cache: keys = the L2-normalised ``features (N, F)``, values = ``labels (N,)``."""
        dim = self.text.shape[1]
        if features.ndim != 2 or features.shape[0] != labels.shape[0] or features.shape[1] != dim:
            raise ValueError(f"head '{self.name}': the cache needs features (N, {dim}) and "
                             f"labels (N,); got {tuple(features.shape)} and {tuple(labels.shape)}.")
        labels = labels.long()
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(self.class_names)):
            raise ValueError(f"head '{self.name}': labels must lie in [0, {len(self.class_names)}); got "
                             f"{int(labels.min())}..{int(labels.max())}.")
        self._set_cache(F.normalize(features.float(), dim=-1), labels)

    def fit_state_shapes(self, tensors: dict[str, torch.Tensor]) -> None:
        """Resize the cache to the saved one (``keys``, ``labels`` in ``tensors``, named relative to this
        head) so that the saved tensors can be copied in by name. A cache of that size already is kept as
        it is: a resumed run's optimizer holds its keys parameter."""
        if "keys" in tensors and "labels" in tensors and (
                tensors["keys"].shape != self.keys.shape or tensors["labels"].shape != self.labels.shape):
            self._set_cache(torch.zeros_like(tensors["keys"], dtype=torch.float32),
                            torch.zeros_like(tensors["labels"], dtype=torch.long))

    def set_class_names(self, names: Sequence[str]) -> None:
        """The cache holds its own classes: other names raise `ModelError` (the same names: nothing)."""
        check_own_classes(self.name, self.class_names, names)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = cosine_logits(self.log_scale, features, self.text)  # (B, C) zero-shot
        if not self.num_keys:
            return logits
        f = F.normalize(features, dim=-1)
        affinity = f @ self.keys.t().to(f.dtype)  # (B, N)
        weights = torch.exp(-self.beta * (1.0 - affinity)).float()
        cache = weights.new_zeros(weights.shape[0], self.text.shape[0]).index_add_(1, self.labels, weights)
        return logits + self.alpha * cache


@dataclass
class TipAdapterOptions:
    alpha: float = 1.0  # weight of the cache logits against zero-shot (0 = zero-shot CLIP)
    beta: float = 5.5  # sharpness of the key affinities exp(-beta * (1 - cos))
    templates: str | tuple[str, ...] = "simple"  # "openai" (80 prompts), "simple" (18), or prompts with {}
    logit_scale: float | str | None = "backbone"  # fixed; "backbone" = its own (else ln 100), null = ln 100


def _build(name: str, train_keys: bool, backbone: nn.Module, num_classes: int,
           class_names: Sequence[str] | None, options: TipAdapterOptions | None) -> TipAdapterHead:
    options = options or TipAdapterOptions()
    text = fewshot_text_rows(backbone, class_names, num_classes, options.templates, name)
    if text.shape[1] != feature_dim(backbone):
        raise ValueError(f"head '{name}': text rows have {text.shape[1]} dims, image features "
                         f"{feature_dim(backbone)}; the backbone must embed both in one space.")
    return TipAdapterHead(text=text, class_names=list(class_names or []), alpha=options.alpha,
                          beta=options.beta, train_keys=train_keys, name=name,
                          log_scale=fewshot_logit_scale(backbone, options.logit_scale, name))


@HEADS.register("tip_adapter", tasks=("classification",), options=TipAdapterOptions)
def build_tip_adapter(backbone: nn.Module, num_classes: int, class_names: Sequence[str] | None = None,
                      options: TipAdapterOptions | None = None) -> TipAdapterHead:
    """Tip-Adapter: zero-shot plus a training-free cache of the few-shot features (nothing trains).

    Example (``adapter: frozen``; the task fills the cache from the train split):
        model: {backbone: "openclip:ViT-B-16", adapter: frozen, head: tip_adapter,
                head_options: {alpha: 1.0, beta: 5.5}}
    """
    return _build("tip_adapter", False, backbone, num_classes, class_names, options)


@HEADS.register("tip_adapter_f", tasks=("classification",), options=TipAdapterOptions)
def build_tip_adapter_f(backbone: nn.Module, num_classes: int, class_names: Sequence[str] | None = None,
                        options: TipAdapterOptions | None = None) -> TipAdapterHead:
    """Tip-Adapter-F: the Tip-Adapter cache with its keys fine-tuned (N x D parameters; values fixed)."""
    return _build("tip_adapter_f", True, backbone, num_classes, class_names, options)
