"""The text side pretraining needs from a dual encoder: pooled features and per-token features (SPARC).

umg's `TextTransformer` has both; an open_clip CLIP computes the pooled feature in ``encode_text`` only, so
`OpenCLIPTextTower` runs the same layers and keeps every token: embeddings, transformer under the causal
mask, final norm, then the text projection on each token; the pooled feature is the end-of-text token's
(checked against ``encode_text`` in the tests). Both towers are causal, so cutting the ids after the
batch's last end-of-text token changes nothing (`PretrainModel.text_ids`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["text_tower"]


class UMGTextTower:
    """umg's own text transformer."""

    def __init__(self, text: nn.Module) -> None:
        self.text = text
        self.embed_dim = int(text.proj.out_features)

    def pooled(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text(ids)

    def tokens(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens (M, L, D), pooled (M, D))``, both projected, not normalised."""
        return self.text.forward_tokens(ids)


class OpenCLIPTextTower:
    """An open_clip CLIP's causal text transformer (``CLIP`` or ``CustomTextCLIP``)."""

    def __init__(self, model: nn.Module, name: str) -> None:
        self.model = model
        self.parts = getattr(model, "text", model)  # CustomTextCLIP keeps the tower in .text
        if getattr(self.parts, "attn_mask", None) is None or getattr(self.parts, "cls_emb", None) is not None:
            raise ConfigError(f"{name}: pretraining needs a causal CLIP text tower (SigLIP's and CoCa's are "
                              "not); use a CLIP-style open_clip model such as EVA02-B-16 or ViT-B-16.",
                              key="model.backbone")
        proj = self.parts.text_projection
        self.embed_dim = int(proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1])

    def pooled(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tokens(ids)[1]  # encode_text itself needs full-context ids

    def tokens(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.parts
        n = ids.shape[1]
        x = t.token_embedding(ids) + t.positional_embedding[:n].to(t.token_embedding.weight.dtype)
        x = t.transformer(x, attn_mask=t.attn_mask[:n, :n])
        x = t.ln_final(x)
        proj = t.text_projection
        tokens = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        pooled = tokens[torch.arange(ids.shape[0], device=ids.device), ids.argmax(dim=-1)]
        return tokens, pooled


def text_tower(backbone: nn.Module) -> UMGTextTower | OpenCLIPTextTower:
    """The pretraining view of ``backbone``'s text tower."""
    from ..backbones.umg import UMGBackbone

    if isinstance(backbone, UMGBackbone):
        return UMGTextTower(backbone.text)
    return OpenCLIPTextTower(backbone.model, backbone.name)
