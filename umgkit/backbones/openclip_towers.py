"""open_clip towers that are not open_clip's own ViT: a timm trunk (EVA02-CLIP, SigLIP, ConvNeXt-CLIP) with
open_clip's projection head, and the text tower beside it.

- ViT-like trunks (EVA02, SigLIP's ViT) run token by token like `TimmBackbone`. The pooled image feature is
  open_clip's own (``visual.head(trunk.forward_head(...))``). Patch and region embeddings go through the
  same head per token; where the trunk pools with an attention "MAP" head (SigLIP) a token has no path
  through the probe's query, so they use the pooling attention's *value path* (``proj(v(x))`` plus its
  residual MLP, MaskCLIP-style), which is exactly what the head gives an image of one token.
- Hierarchical trunks (ConvNeXt) give stage maps like `TimmFeatureBackbone`; the joint space per location
  is the trunk head's norm and open_clip's projection applied at each location (the image feature applies
  them after average pooling).

The trunk is rebuilt with timm's ``dynamic_img_size=True`` (same weights, loaded strictly) because
open_clip builds it for its native size only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from .base import l2_normalize, roi_pool_mean
from .timm_backbone import TimmBackbone
from .timm_features import TimmFeatureBackbone, is_hierarchical

__all__ = ["OpenCLIPTimmViT", "OpenCLIPTimmStages", "LazyTokenizer", "wrap_timm_tower"]

_TRUNK = "visual.trunk"


class LazyTokenizer:
    """open_clip's tokenizer, made on the first call: some (SigLIP's) come from the Hugging Face hub, and
    a vision-only use of the backbone should not need the network. A failure is one clear error."""

    def __init__(self, loader, label: str) -> None:
        self._loader, self._label, self._tokenizer = loader, label, None

    def __call__(self, texts: list[str]) -> torch.Tensor:
        if self._tokenizer is None:
            try:
                self._tokenizer = self._loader()
            except (OSError, ImportError, ValueError, RuntimeError) as err:
                reason = next(iter(str(err).splitlines()), type(err).__name__)
                raise WeightsError(f"{self._label}: its text tokenizer could not be loaded ({reason}). "
                                   "Some open_clip tokenizers (SigLIP's) are downloaded from the Hugging "
                                   "Face hub: load it once with the network so it is cached, then "
                                   "HF_HUB_OFFLINE=1 works.") from None
        return self._tokenizer(texts)


class _OpenCLIPText:
    """The text side shared by the open_clip wrappers: open_clip's tokenizer and ``encode_text``."""

    model: nn.Module
    tokenizer: object

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts)

    def _encode_text(self, texts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return self.model.encode_text(self.tokenize(texts).to(device), normalize=False)


def _joint_dim(model: nn.Module) -> int:
    """Width of open_clip's image output: the head's projection, else the trunk's own head or features."""
    for layer in reversed(list(model.visual.head.modules())):
        if isinstance(layer, nn.Linear):
            return layer.out_features
    trunk_head = getattr(model.visual.trunk, "head", None)
    if isinstance(trunk_head, nn.Linear):
        return trunk_head.out_features
    return int(model.visual.trunk.num_features)


def _set_stats(backbone: nn.Module, model: nn.Module) -> None:
    pre = getattr(model.visual, "preprocess_cfg", {}) or {}
    if pre.get("mean") and pre.get("std"):
        backbone.image_mean, backbone.image_std = tuple(pre["mean"]), tuple(pre["std"])


class OpenCLIPTimmViT(_OpenCLIPText, TimmBackbone):
    """open_clip CLIP whose image tower is a timm ViT-like trunk (EVA02-CLIP, SigLIP)."""

    def __init__(self, model: nn.Module, tokenizer, *, name: str) -> None:
        super().__init__(model, name=name, trunk_path=_TRUNK, embed_dim=_joint_dim(model), has_text=True)
        self.tokenizer = tokenizer
        _set_stats(self, model)

    def _pool_image(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.visual.head(self.trunk.forward_head(self.final_norm(tokens)))

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        t = self.trunk
        pool = getattr(t, "attn_pool", None)
        if getattr(t, "global_pool", "") == "map" and pool is not None:
            c = x.shape[-1]
            bias = None if pool.kv.bias is None else pool.kv.bias[c:]
            a = pool.proj(F.linear(x, pool.kv.weight[c:], bias))
            x = a + pool.mlp(pool.norm(a))
        x = t.head(t.head_drop(t.fc_norm(x)))
        return self.model.visual.head(x)


class OpenCLIPTimmStages(_OpenCLIPText, TimmFeatureBackbone):
    """open_clip CLIP whose image tower is a hierarchical timm trunk (ConvNeXt-CLIP)."""

    def __init__(self, model: nn.Module, tokenizer, *, name: str) -> None:
        super().__init__(model, name=name, trunk_path=_TRUNK, embed_dim=_joint_dim(model), has_text=True)
        self.tokenizer = tokenizer
        _set_stats(self, model)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.model.visual(images))

    def _project_map(self, fmap: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` -> ``(B, h, w, D)``: the pooled path's norm and projection at each location."""
        norm = getattr(getattr(self.trunk, "head", None), "norm", None)
        if norm is not None:
            fmap = norm(fmap)
        return self.model.visual.head(fmap.permute(0, 2, 3, 1))

    def embed_pixels(self, images: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self._project_map(self.dense(images)), dim=-1).permute(0, 3, 1, 2)

    def embed_regions(self, images: torch.Tensor, boxes: Sequence[torch.Tensor]) -> torch.Tensor:
        pooled = roi_pool_mean(self.dense(images), boxes, self.patch_size)  # (K, C)
        return l2_normalize(self._project_map(pooled[:, :, None, None])[:, 0, 0])


def _dynamic_trunk(model: nn.Module) -> None:
    """Rebuild a ViT-like trunk with ``dynamic_img_size=True`` (any input size), weights loaded strictly."""
    import timm

    trunk = model.visual.trunk
    if getattr(trunk, "dynamic_img_size", True):
        return
    new = timm.create_model(trunk.default_cfg["architecture"], num_classes=trunk.num_classes,
                            global_pool=trunk.global_pool, dynamic_img_size=True,
                            img_size=trunk.patch_embed.img_size)
    new.load_state_dict(trunk.state_dict(), strict=True)
    model.visual.trunk = new.to(next(trunk.parameters()).device).eval()


def wrap_timm_tower(model: nn.Module, tokenizer, name: str) -> nn.Module:
    """The backbone for an open_clip model whose ``visual`` is a ``TimmModel``."""
    if is_hierarchical(model.visual.trunk):
        return OpenCLIPTimmStages(model, tokenizer, name=name)
    _dynamic_trunk(model)
    return OpenCLIPTimmViT(model, tokenizer, name=name)
