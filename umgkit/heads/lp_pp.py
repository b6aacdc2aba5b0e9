"""LP++-style linear probe (after Huang et al., 2024): visual prototypes blended with the text classifier.

``logits = s * (f W^T + alpha * (f T^T))``: ``W (C, D)`` trained, initialised from the class means of the
few-shot features (each mean L2-normalised); ``alpha (C,)`` a trained per-class weight of the fixed text
classifier ``T (C, D)``, initialised to 1; ``s = exp(logit_scale)`` fixed. ``C * D + C`` parameters.

Kept from LP++: the model (a linear probe on the frozen image feature plus the zero-shot text classifier,
blended per class by learnable multipliers) and the data-driven start of the visual weights from the
class means of the support features. Simplified: the weights are trained by the run's optimizer (AdamW at
``train.lr``) instead of LP++'s block-coordinate majorize-minimize updates with closed-form step sizes
from Lipschitz constants, and alpha starts at 1 rather than being estimated from the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import HEADS
from ._fewshot import check_own_classes, fewshot_logit_scale, fewshot_text_rows

__all__ = ["LPPlusPlusHead", "LPPlusPlusOptions", "build_lp_pp"]


class LPPlusPlusHead(nn.Module):
    """``(B, D) -> (B, C)``; see the module docstring. Until `init_from_features` the visual rows are the
    text rows (so an uninitialised head predicts ``2 s f T^T``: zero-shot ranking)."""

    classifier_kind = "few_shot"  # rows fitted to its own classes: no new names, no relabelling

    def __init__(self, *, text: torch.Tensor, class_names: Sequence[str], log_scale: torch.Tensor) -> None:
        super().__init__()
        self.class_names = list(class_names)
        self.register_buffer("text", text.detach().clone().float(), persistent=False)  # (C, D), rebuilt
        self.register_buffer("log_scale", log_scale.detach().clone().float(), persistent=False)
        self.weight = nn.Parameter(text.detach().clone().float())  # (C, D) visual prototypes
        self.alpha = nn.Parameter(torch.ones(text.shape[0]))  # (C,) per-class weight of the text logits

    @torch.no_grad()
    def init_from_features(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """``weight[c]`` = the normalised mean of the normalised ``features`` of class ``c``; a class with
        no sample keeps its text row."""
        feats = F.normalize(features.float(), dim=-1).to(self.weight.device)
        labels = labels.long().to(self.weight.device)
        num = len(self.class_names)
        sums = feats.new_zeros(num, feats.shape[1]).index_add_(0, labels, feats)
        counts = torch.bincount(labels, minlength=num)[:num]
        seen = counts > 0
        self.weight[seen] = F.normalize(sums[seen] / counts[seen, None], dim=-1)

    def set_class_names(self, names: Sequence[str]) -> None:
        """The prototypes belong to the trained classes: other names raise `ModelError`."""
        check_own_classes("lp_pp", self.class_names, names)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        f = F.normalize(features, dim=-1)
        visual = f @ self.weight.t().to(f.dtype)  # (B, C)
        text = f @ self.text.t().to(f.dtype)  # (B, C)
        return self.log_scale.exp() * (visual + self.alpha.to(f.dtype) * text)


@dataclass
class LPPlusPlusOptions:
    templates: str | tuple[str, ...] = "simple"  # "openai" (80 prompts), "simple" (18), or prompts with {}
    logit_scale: float | str | None = "backbone"  # fixed; "backbone" = its own (else ln 100), null = ln 100


@HEADS.register("lp_pp", tasks=("classification",), options=LPPlusPlusOptions)
def build_lp_pp(backbone: nn.Module, num_classes: int, class_names: Sequence[str] | None = None,
                options: LPPlusPlusOptions | None = None) -> LPPlusPlusHead:
    """LP++-style probe: class-mean visual prototypes plus per-class weighted text logits (C x D + C).

    Example (``adapter: frozen``; the task initialises the prototypes from the train split):
        model: {backbone: "openclip:ViT-B-16", adapter: frozen, head: lp_pp}
    """
    options = options or LPPlusPlusOptions()
    text = fewshot_text_rows(backbone, class_names, num_classes, options.templates, "lp_pp")
    return LPPlusPlusHead(text=text, class_names=list(class_names or []),
                          log_scale=fewshot_logit_scale(backbone, options.logit_scale, "lp_pp"))
