"""``openclip:<model name>`` — an open_clip CLIP model behind the backbone contract.

Adapter targets: vision blocks at ``model.visual.transformer.resblocks`` (also ``backbone.blocks``),
text blocks at ``model.transformer.resblocks``; inside a block ``ln_1``, ``attn`` (``nn.MultiheadAttention``:
fused ``in_proj_weight`` (3C, C) / ``in_proj_bias``, ``out_proj``), ``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``.
open_clip >= 2.24 builds its transformers with ``batch_first=True``; the other layout is handled too.

The image tower is run piece by piece (``conv1``, ``class_embedding``, ``positional_embedding`` resampled,
``patch_dropout``, ``ln_pre``, resblocks, ``ln_post``, ``proj``) so any input size and intermediate
layers work; at the native size ``encode_image`` equals ``model.encode_image`` exactly. Towers with a timm
trunk (EVA02, SigLIP, ConvNeXt) and ModifiedResNets (RN50) are wrapped by
`umgkit.backbones.openclip_towers`; CoCa's attentional pooler is refused with a clear error.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .._tensors import reading_weights
from ..errors import ConfigError, unknown_name
from ..registry import BACKBONES
from ._pos_embed import resample_pos_embed
from .base import Backbone
from .openclip_towers import LazyTokenizer, OpenCLIPResNet, _OpenCLIPText, wrap_timm_tower
from .weights import check_local_file, fetching, hub_offline, is_local_path, offline_error

__all__ = ["OpenCLIPBackbone", "build_openclip", "UMGKIT_OPENCLIP_CONFIGS"]

UMGKIT_OPENCLIP_CONFIGS = Path(__file__).parent / "openclip_configs"
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class OpenCLIPBackbone(_OpenCLIPText, Backbone):
    """Wraps ``model`` (an open_clip ``CLIP``) without copying it; ``tokenizer`` maps texts to ids."""

    def __init__(self, model: nn.Module, tokenizer, *, name: str) -> None:
        v = getattr(model, "visual", None)
        if not all(hasattr(v, a) for a in ("conv1", "class_embedding", "positional_embedding", "ln_post")):
            raise ConfigError(f"{name}: open_clip {type(v).__name__} image towers are not supported; use a "
                              "ViT (openclip:ViT-B-16), EVA02 (openclip:EVA02-B-16), SigLIP, ConvNeXt "
                              "(openclip:convnext_base) or ResNet (openclip:RN50) model.")
        if getattr(v, "attn_pool", None) is not None:
            raise ConfigError(f"{name}: open_clip ViT towers with an attentional pooler (CoCa) are not "
                              "supported; use a ViT, EVA02, SigLIP or ConvNeXt model.")
        pre = getattr(v, "preprocess_cfg", {}) or {}
        super().__init__(name=name, embed_dim=int(v.output_dim), width=v.conv1.out_channels,
                         patch_size=v.conv1.kernel_size[0], num_layers=len(v.transformer.resblocks),
                         has_text=hasattr(model, "encode_text"), image_size=tuple(v.image_size),
                         image_mean=pre.get("mean", _CLIP_MEAN), image_std=pre.get("std", _CLIP_STD))
        self.model = model
        self.tokenizer = tokenizer
        self._freeze()

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.visual.transformer.resblocks

    def _embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        v = self.model.visual
        x = v.conv1(images)  # (B, C, h, w)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)  # (B, h*w, C)
        cls = v.class_embedding.to(x.dtype).reshape(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + resample_pos_embed(v.positional_embedding, tuple(v.grid_size), grid, 1).to(x.dtype)
        return v.ln_pre(v.patch_dropout(x)), grid

    def _run_block(self, block: nn.Module, x: torch.Tensor, extra: object = None) -> torch.Tensor:
        if self.model.visual.transformer.batch_first:
            return block(x)
        return block(x.transpose(0, 1)).transpose(0, 1)  # the block wants (L, B, C)

    def _run_block_masked(self, block: nn.Module, x: torch.Tensor, extra: object,
                          mask: torch.Tensor) -> torch.Tensor:
        if self.model.visual.transformer.batch_first:
            return block(x, attn_mask=mask)
        return block(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.visual.ln_post(x)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        proj = self.model.visual.proj
        return x if proj is None else x @ proj.to(x.dtype)

    def _pool_image(self, tokens: torch.Tensor) -> torch.Tensor:
        """open_clip's pooling: class token (``tok``) or patch mean (``avg``), ln_post before or after."""
        v = self.model.visual
        if v.pool_type == "tok":
            pooled = self.final_norm(tokens[:, 0])
        elif v.pool_type == "avg":
            patches = tokens[:, 1:]
            pooled = (self.final_norm(patches.mean(1)) if v.final_ln_after_pool
                      else self.final_norm(patches).mean(1))
        else:
            raise NotImplementedError(f"{self.name}: open_clip pool_type {v.pool_type!r} is not supported.")
        return self._project(pooled)



def _ensure_umgkit_configs() -> None:
    """Make the tiny configs shipped with umgkit known to open_clip (once, when first needed)."""
    import open_clip

    missing = [p for p in UMGKIT_OPENCLIP_CONFIGS.glob("*.json") if p.stem not in open_clip.list_models()]
    if missing:
        open_clip.add_model_config(UMGKIT_OPENCLIP_CONFIGS)


@BACKBONES.register("openclip:", doc="open_clip CLIP (ViT, RN50; timm trunks: EVA02, SigLIP, ConvNeXt): "
                                     "openclip:<model>, pretrained=<local file or tag>")
def build_openclip(name: str, pretrained: str | None = None, **kwargs) -> Backbone:
    """``open_clip.create_model(name, pretrained=...)`` wrapped as a backbone.

    ``pretrained``: None (random init), a local ``.safetensors`` / ``.bin`` / ``.pt`` file (``.bin`` /
    ``.pt`` read with ``torch.load(weights_only=True)``), or an open_clip tag (downloaded from the hub;
    offline it raises with the fix). ``kwargs`` go to ``create_model`` (e.g. ``force_image_size``).
    Only reading weights and fetching files become `WeightsError`; an error while building the model
    itself propagates as it is (with its traceback under ``--debug``).
    """
    import open_clip

    _ensure_umgkit_configs()
    label = f"openclip:{name}"
    if name.startswith("hf-hub:"):  # config and weights both come from the hub (or its cache, offline)
        model = fetching(lambda: open_clip.create_model(name, weights_only=True, **kwargs), label, name,
                         "open_clip_model")
        return _wrap(model, LazyTokenizer(lambda: open_clip.get_tokenizer(name), label), label)
    if name not in open_clip.list_models():
        raise unknown_name("open_clip model", name, open_clip.list_models(),
                           "`python -c 'import open_clip; print(open_clip.list_models())'` lists them.")
    kwargs.setdefault("weights_only", True)
    if pretrained and is_local_path(pretrained):
        path = check_local_file(pretrained, label)
        # the file holds every weight: no tower starts from base weights fetched from the hub first
        kwargs.setdefault("pretrained_image", False)
        kwargs.setdefault("pretrained_text", False)
        model = open_clip.create_model(name, **kwargs)  # built outside: a bug here is not a weights error
        with reading_weights(path):
            open_clip.load_checkpoint(model, path, weights_only=kwargs["weights_only"])
    elif pretrained:
        if not open_clip.get_pretrained_cfg(name, pretrained):
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise unknown_name(f"open_clip pretrained tag for {name}", pretrained, tags,
                               f"Its tags: {', '.join(tags) or 'none'}; or give a local weights file.")
        if hub_offline():
            raise offline_error(label, pretrained, "open_clip_model")
        model = fetching(lambda: open_clip.create_model(name, pretrained=pretrained, **kwargs), label,
                         pretrained, "open_clip_model")
    else:
        model = open_clip.create_model(name, **kwargs)
    return _wrap(model, LazyTokenizer(lambda: open_clip.get_tokenizer(name), label), label)


def _wrap(model: nn.Module, tokenizer, label: str) -> Backbone:
    """open_clip's own ViT tower as `OpenCLIPBackbone`; a timm trunk through `wrap_timm_tower`."""
    if hasattr(model.visual, "trunk"):
        return wrap_timm_tower(model, tokenizer, label)
    if hasattr(model.visual, "attnpool") and hasattr(model.visual, "layer4"):
        return OpenCLIPResNet(model, tokenizer, name=label)
    return OpenCLIPBackbone(model, tokenizer, name=label)
