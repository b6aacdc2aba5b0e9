"""CoCoOp (Zhou et al., 2022): CoOp's context shifted per image by a small meta-network, so the prompt
follows the image and generalises better to classes unseen in training.

For image feature ``f (D,)``: ``ctx(f) = ctx + meta_net(f)`` (one ``W``-vector added to each of the ``M``
tokens), ``meta_net = Linear(D, D/16) -> ReLU -> Linear(D/16, W)``. Parameters: ``M*W + D*h + h + h*W + W``
with ``h = D // reduction`` (35,360 for ViT-B/16 with M = 4). Every image needs its own ``C`` class
features, so a batch of ``B`` images encodes ``B * C`` prompts: keep batches small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import ADAPTERS
from ._base import Adapter, check_positive
from .coop import TextPrompt, initial_context, require_text_tower

__all__ = ["CoCoOpAdapter", "CoCoOpConfig", "CoCoOpPrompt"]


class CoCoOpPrompt(TextPrompt):
    """``cocoop_ctx (M, W)`` and ``cocoop_meta_net``; class features ``(B, C, D)`` for ``B`` images."""

    conditioned = True

    def __init__(self, context: torch.Tensor, image_dim: int, reduction: int, suffix: str) -> None:
        super().__init__(suffix)
        self.cocoop_ctx = nn.Parameter(context)
        hidden = max(1, image_dim // reduction)
        width = context.shape[-1]
        self.cocoop_meta_net = nn.Sequential(nn.Linear(image_dim, hidden), nn.ReLU(inplace=True),
                                             nn.Linear(hidden, width)).to(context.device)

    def class_features(self, backbone: nn.Module, names: Sequence[str],
                       image_features: torch.Tensor | None = None) -> torch.Tensor:
        if image_features is None:
            raise ValueError("CoCoOp's prompts depend on the image: pass image_features (B, D).")
        b, c = image_features.shape[0], len(names)
        ctx = self.cocoop_ctx.unsqueeze(0) + self.cocoop_meta_net(image_features.float()).unsqueeze(1)
        m, w = ctx.shape[1:]
        contexts = ctx.unsqueeze(1).expand(b, c, m, w).reshape(b * c, m, w)  # image-major
        texts = self.texts(names) * b
        return backbone.encode_text_with_context(texts, contexts).float().reshape(b, c, -1)  # (B, C, D)


@dataclass
class CoCoOpConfig:
    n_ctx: int | None = None  # learned tokens M; null = 16, or the token count of ctx_init (CoCoOp: 4)
    ctx_init: str | None = "a photo of a"  # words whose embeddings start the context; null = random
    reduction: int = 16  # meta-net hidden width = image feature dim // reduction
    suffix: str = "."  # text after the class name

    def __post_init__(self) -> None:
        check_positive("cocoop", reduction=self.reduction)
        if self.n_ctx is not None:
            check_positive("cocoop", n_ctx=self.n_ctx)


@ADAPTERS.register("cocoop")
class CoCoOpAdapter(Adapter):
    """Image-conditioned learned context (see the module docstring); needs head ``clip``."""

    method = "cocoop"
    config_cls = CoCoOpConfig
    changes_image_features = False

    def inject(self, model: nn.Module) -> None:
        require_text_tower(self.method, model)
        if not getattr(model, "embed_dim", None):
            raise ConfigError(f"adapter 'cocoop' conditions prompts on the joint-space image feature; "
                              f"{model.name} declares no embed_dim.")
        c = self.config
        ctx = initial_context(model, self.method, c.n_ctx, c.ctx_init)
        model.text_prompt = CoCoOpPrompt(ctx, int(model.embed_dim), c.reduction, c.suffix)

    def owns(self, name: str) -> bool:
        return any(part.startswith("cocoop_") for part in name.split("."))
