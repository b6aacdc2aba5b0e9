"""``contrastive`` head: the learnable temperature (and optional projections) for image-text retrieval.

The backbone already maps both modalities into its joint space, so by default the head adds only the
log inverse temperature ``logit_scale`` (initialised from the backbone's own, when it carries one, else
CLIP's ``ln(1/0.07)``). With ``projection=True`` it adds one ``D x D`` linear map per modality,
initialised to the identity so training starts from the backbone's zero-shot alignment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..registry import HEADS

__all__ = ["ContrastiveHead", "ContrastiveOptions", "build_contrastive_head"]

DEFAULT_LOGIT_SCALE = math.log(1 / 0.07)


class ContrastiveHead(nn.Module):
    """L2-normalised ``(B, D)`` embeddings in, L2-normalised ``(B, D)`` out; owns ``logit_scale``."""

    def __init__(self, *, embed_dim: int, logit_scale: float = DEFAULT_LOGIT_SCALE,
                 projection: bool = False, learn_scale: bool = True) -> None:
        super().__init__()
        self.embed_dim = int(embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)), requires_grad=learn_scale)
        self.image_proj = self.text_proj = None
        if projection:
            self.image_proj = nn.Linear(self.embed_dim, self.embed_dim)
            self.text_proj = nn.Linear(self.embed_dim, self.embed_dim)
            for layer in (self.image_proj, self.text_proj):
                nn.init.eye_(layer.weight)
                nn.init.zeros_(layer.bias)

    def image(self, emb: torch.Tensor) -> torch.Tensor:
        return emb if self.image_proj is None else F.normalize(self.image_proj(emb), dim=-1)

    def text(self, emb: torch.Tensor) -> torch.Tensor:
        return emb if self.text_proj is None else F.normalize(self.text_proj(emb), dim=-1)


@dataclass
class ContrastiveOptions:
    projection: bool = False  # add one D x D map per modality, initialised to the identity
    learn_scale: bool = True  # train logit_scale (false keeps the temperature fixed)
    logit_scale: float | None = None  # log inverse temperature; null = the backbone's own, else ln(1/0.07)


@HEADS.register("contrastive", tasks=("retrieval",), options=ContrastiveOptions)
def build_contrastive_head(backbone: nn.Module, options: ContrastiveOptions | None = None) -> ContrastiveHead:
    """Head for ``backbone`` (needs a joint space: ``embed_dim`` set and a text tower).

    ``logit_scale`` (log inverse temperature) defaults to the backbone's ``logit_scale`` (or its wrapped
    open_clip model's) if it has one, else ``ln(1/0.07)``.
    """
    options = options or ContrastiveOptions()
    logit_scale = options.logit_scale
    embed_dim = getattr(backbone, "embed_dim", None)
    if not embed_dim or not getattr(backbone, "has_text", False):
        raise ConfigError(f"head 'contrastive' needs a backbone with a text tower and joint space; "
                          f"{getattr(backbone, 'name', type(backbone).__name__)} has none. Pick e.g. "
                          "model.backbone=umg:tiny or openclip:ViT-B-16.")
    if logit_scale is None:
        own = getattr(backbone, "logit_scale", None)
        if own is None:  # open_clip wrappers keep the CLIP model (and its scale) as `.model`
            own = getattr(getattr(backbone, "model", None), "logit_scale", None)
        logit_scale = float(own.detach()) if isinstance(own, torch.Tensor) else DEFAULT_LOGIT_SCALE
    return ContrastiveHead(embed_dim=int(embed_dim), logit_scale=logit_scale, projection=options.projection,
                           learn_scale=options.learn_scale)
