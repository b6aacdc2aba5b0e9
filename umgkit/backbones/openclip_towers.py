"""open_clip towers that are not open_clip's own ViT: a timm trunk (EVA02-CLIP, SigLIP, ConvNeXt-CLIP) with
open_clip's projection head, or a ModifiedResNet (RN50-style CLIP, see `OpenCLIPResNet`), and the text
tower beside it.

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
from ._pos_embed import resample_pos_embed
from .base import Backbone, l2_normalize, roi_pool_mean
from .timm_backbone import TimmBackbone
from .timm_features import TimmFeatureBackbone, is_hierarchical
from .weights import fetch_failure, fetch_reason

__all__ = ["OpenCLIPTimmViT", "OpenCLIPTimmStages", "OpenCLIPResNet", "LazyTokenizer", "wrap_timm_tower"]

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_TRUNK = "visual.trunk"


class LazyTokenizer:
    """open_clip's tokenizer, made on the first call: some (SigLIP's) come from the Hugging Face hub, and
    a vision-only use of the backbone should not need the network. A failed download or an unreadable
    tokenizer file is one clear error (the hub named only when it is the reason); a bug propagates."""

    def __init__(self, loader, label: str) -> None:
        self._loader, self._label, self._tokenizer = loader, label, None

    def __call__(self, texts: list[str]) -> torch.Tensor:
        if self._tokenizer is None:
            try:
                self._tokenizer = self._loader()
            except Exception as err:  # noqa: BLE001  sorted below: file and download problems vs bugs
                failure = fetch_failure(err)
                if failure is None:
                    if not isinstance(err, (OSError, ValueError)):  # not a file problem: a bug, shown as is
                        raise
                    reason = next(iter(str(err).splitlines()), "") or type(err).__name__
                    raise WeightsError(f"{self._label}: its text tokenizer could not be loaded ({reason}); "
                                       "check the tokenizer its open_clip config names.") from err
                raise WeightsError(f"{self._label}: its text tokenizer could not be loaded because "
                                   f"{fetch_reason(failure)}. Some open_clip tokenizers (SigLIP's) are "
                                   "downloaded from the Hugging Face hub: load it once with the network so "
                                   "it is cached, then HF_HUB_OFFLINE=1 works.") from err
        return self._tokenizer(texts)


class _OpenCLIPText:
    """The text side shared by the open_clip wrappers: open_clip's tokenizer and ``encode_text``."""

    model: nn.Module
    tokenizer: object

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts)

    @property
    def text_token_embedding(self) -> nn.Module:
        """open_clip's CLIP keeps it at the top; CustomTextCLIP in its ``text`` tower."""
        text = getattr(self.model, "text", self.model)
        found = getattr(text, "token_embedding", None)
        if found is None:  # an HF text encoder inside open_clip
            get = getattr(getattr(text, "transformer", None), "get_input_embeddings", None)
            found = get() if get is not None else None
        if found is None:
            raise NotImplementedError(f"{self.name}: no token-embedding lookup found in its text tower "
                                      f"({type(text).__name__}); prompt learning cannot reach it.")
        return found

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


class OpenCLIPResNet(_OpenCLIPText, TimmFeatureBackbone):
    """open_clip's ModifiedResNet (RN50-style CLIP): stem, four stages (strides 4-32), attention pooling.

    The pooling's positional embedding is resampled to the input's grid, so any size works (at the native
    size the image feature equals ``model.encode_image``). Patch and region embeddings use the pooling's
    value path at each location, ``c_proj(v_proj(x + pos))`` (MaskCLIP), which is affine in ``x``: a
    region's embedding is the mean of its locations' (RoIAlign over the projected map).
    """

    def __init__(self, model: nn.Module, tokenizer, *, name: str) -> None:
        v = model.visual
        chans = [_out_channels(getattr(v, f"layer{i}")) for i in range(1, 5)]
        self.stage_info = [(c, 2 ** (i + 2), f"layer{i + 1}") for i, c in enumerate(chans)]
        pool = v.attnpool
        size = int(v.image_size if isinstance(v.image_size, int) else v.image_size[0])
        pre = getattr(v, "preprocess_cfg", {}) or {}
        Backbone.__init__(self, name=name, embed_dim=int(pool.c_proj.out_features), width=chans[-1],
                          patch_size=32, num_layers=4, has_text=True, image_size=(size, size),
                          image_mean=pre.get("mean", _CLIP_MEAN), image_std=pre.get("std", _CLIP_STD))
        self.model, self._trunk_path = model, "visual"
        self.tokenizer = tokenizer
        self._native_grid = (size // 32, size // 32)
        self._freeze()

    def set_grad_checkpointing(self, enabled: bool = True) -> Backbone:
        return Backbone.set_grad_checkpointing(self, enabled)

    def _stages(self, images: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        v = self.model.visual
        x, outs = v.stem(images.to(v.conv1.weight.dtype)), {}
        for i in range(max(indices) + 1):
            x = getattr(v, f"layer{i + 1}")(x)
            outs[i] = x
        return [outs[i] for i in indices]

    def _positions(self, grid: tuple[int, int]) -> torch.Tensor:
        return resample_pos_embed(self.model.visual.attnpool.positional_embedding, self._native_grid, grid, 1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        fmap = self.dense(images)
        pool = self.model.visual.attnpool
        x = fmap.flatten(2).permute(2, 0, 1)  # (h*w, B, C)
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
        x = x + self._positions(tuple(fmap.shape[-2:]))[:, None, :].to(x.dtype)
        out, _ = F.multi_head_attention_forward(
            query=x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=pool.num_heads,
            q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight,
            v_proj_weight=pool.v_proj.weight, in_proj_weight=None,
            in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0, out_proj_weight=pool.c_proj.weight,
            out_proj_bias=pool.c_proj.bias, use_separate_proj_weight=True, training=False, need_weights=False)
        return l2_normalize(out[0])

    def _project_map(self, fmap: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` -> ``(B, D, h, w)``: the pooling's value path at each location."""
        pool = self.model.visual.attnpool
        x = fmap.flatten(2).transpose(1, 2) + self._positions(tuple(fmap.shape[-2:]))[1:].to(fmap.dtype)
        z = pool.c_proj(pool.v_proj(x))  # (B, h*w, D)
        return z.transpose(1, 2).reshape(fmap.shape[0], -1, *fmap.shape[-2:])

    def embed_pixels(self, images: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self._project_map(self.dense(images)), dim=1)

    def embed_regions(self, images: torch.Tensor, boxes: Sequence[torch.Tensor]) -> torch.Tensor:
        return l2_normalize(roi_pool_mean(self._project_map(self.dense(images)), boxes, self.patch_size))


def _out_channels(stage: nn.Module) -> int:
    """Channels a ResNet stage outputs: its last BatchNorm's."""
    return [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features
