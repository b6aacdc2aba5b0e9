"""Pieces shared by the few-shot CLIP heads (Tip-Adapter(-F), CLIP-Adapter, LP++).

Every few-shot head scores ``(B, F)`` `encode_image` features against the fixed text classifier
``T (C, D)`` (`text_classifier_weights`) at a fixed logit scale. The scale defaults to the backbone's own
learned one (``logit_scale: backbone``), or ``ln(100)`` (CLIP's trained value, the one the few-shot papers
multiply by) when the backbone has none; it is never trained by these heads, so their trainable-parameter
counts are exactly the methods' own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ModelError
from .classification import _backbone_logit_scale, text_classifier_weights

__all__ = ["FEWSHOT_LOGIT_SCALE", "check_own_classes", "cosine_logits", "fewshot_logit_scale",
           "fewshot_text_rows"]

FEWSHOT_LOGIT_SCALE = math.log(100.0)


def fewshot_logit_scale(backbone: nn.Module, value: float | str | None, head: str) -> torch.Tensor:
    """``value`` as a 0-d float32 log inverse temperature: ``"backbone"`` = the backbone's own (ln 100 when
    it has none), ``None`` = ln 100, or a number."""
    if value == "backbone":
        value = _backbone_logit_scale(backbone)
    elif isinstance(value, str):
        raise ConfigError(f"head_options.logit_scale={value!r} for head '{head}': use 'backbone', null "
                          "(ln 100) or a number (log inverse temperature, e.g. 4.605 for 100).")
    return torch.tensor(FEWSHOT_LOGIT_SCALE if value is None else float(value))


def fewshot_text_rows(backbone: nn.Module, class_names: Sequence[str] | None, num_classes: int,
                      templates: str | Sequence[str], head: str) -> torch.Tensor:
    """``T (C, D)``: the class names' prompt embeddings, after checking there is one name per class."""
    names = list(class_names or [])
    if len(names) != int(num_classes):
        raise ValueError(f"head '{head}' got {len(names)} class names for num_classes={num_classes}; the "
                         "dataset must provide class_names (or set data.class_names to a file of names).")
    return text_classifier_weights(backbone, names, templates)


def cosine_logits(log_scale: torch.Tensor, features: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``exp(log_scale) * normalize(features) @ normalize(rows).T``: ``(B, F), (C, F) -> (B, C)``.

    The very expression `TextInitHead` evaluates, in the same order, so a few-shot head whose own part is
    switched off (Tip-Adapter's alpha = 0, CLIP-Adapter's ratio = 0) gives zero-shot logits bit for bit.
    """
    w = F.normalize(rows, dim=-1)
    return log_scale.exp() * F.normalize(features, dim=-1) @ w.t().to(features.dtype)


def check_own_classes(head: str, own: Sequence[str], names: Sequence[str]) -> None:
    """Same names: nothing to do. Others: `ModelError`, since the head's rows (a cache of training images,
    prototypes fitted to them) belong to the classes it was trained on and cannot be re-encoded."""
    if list(names) == list(own):
        return
    shown = ", ".join(list(own)[:8]) + (", ..." if len(own) > 8 else "")
    raise ModelError(f"head '{head}' holds rows fitted to the training images of its own {len(own)} classes "
                     f"({shown}); it cannot classify other names ({len(names)} given). Predict with its own "
                     "classes, or train an open-vocabulary head (model.head=clip_adapter or text_init) to "
                     "name new classes.")
