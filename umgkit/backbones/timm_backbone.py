"""``timm:<name>`` — timm ``VisionTransformer``-style models (ViT, DeiT, DINOv2, SigLIP, EVA / EVA02 with
rotary position embeddings) behind the backbone contract (vision only).

Adapter targets: blocks at ``model.blocks`` (also ``backbone.blocks``, an ``nn.Sequential``); inside a
block ``norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2`` (umg uses the same names).

Vision only: ``embed_dim`` is None, ``has_text`` False. ``encode_image`` returns timm's L2-normalised
pooled feature (``forward_head(pre_logits=True)``: class token or average, ``fc_norm``) — useful for
linear probes and retrieval within images, but *not* a joint image-text space. ``encode_text``,
``embed_regions`` and ``embed_pixels`` raise a clear error (they would only be meaningful with a text
space; region features without one are ``roi_align`` over `dense`). The model is built with
``dynamic_img_size=True`` so any input size works (timm resamples position embeddings bicubically).
"""

from __future__ import annotations

import torch
from torch import nn

from .._tensors import reading_weights
from ..errors import unknown_name
from ..registry import BACKBONES
from .base import Backbone
from .timm_features import TimmFeatureBackbone, is_hierarchical
from .weights import check_local_file, fetching, hub_offline, is_local_path, offline_error

__all__ = ["TimmBackbone", "build_timm"]


class TimmBackbone(Backbone):
    """Wraps a timm ``VisionTransformer`` (``model``) built with ``num_classes=0``.

    ``trunk_path`` names the timm model inside ``model`` when ``model`` is more (open_clip's CLIP keeps it at
    ``visual.trunk``); subclasses then add the joint space (``embed_dim``, ``has_text``).
    """

    def __init__(self, model: nn.Module, *, name: str, trunk_path: str = "", embed_dim: int | None = None,
                 has_text: bool = False) -> None:
        trunk = model.get_submodule(trunk_path)
        needed = ("patch_embed", "_pos_embed", "blocks", "norm", "forward_head")
        if not all(hasattr(trunk, a) for a in needed):
            raise NotImplementedError(f"{name}: only timm VisionTransformer-style models are supported "
                                      f"(patch_embed, blocks, norm); got {type(trunk).__name__}.")
        cfg = getattr(trunk, "pretrained_cfg", {}) or {}
        mean, std = cfg.get("mean", (0.5, 0.5, 0.5)), cfg.get("std", (0.5, 0.5, 0.5))
        patch = trunk.patch_embed.patch_size
        super().__init__(name=name, embed_dim=embed_dim, width=trunk.num_features, patch_size=patch[0],
                         num_layers=len(trunk.blocks), has_text=has_text,
                         image_size=tuple(trunk.patch_embed.img_size),
                         image_mean=mean, image_std=std)
        if patch[0] != patch[1]:
            raise NotImplementedError(f"{name}: non-square patches {patch} are not supported.")
        self.model, self._trunk_path = model, trunk_path
        self.num_prefix_tokens = int(trunk.num_prefix_tokens)
        for module in trunk.modules():
            # EVA attention with separate q / v biases calls F.linear(x, self.qkv.weight, bias) and so never
            # runs the qkv module; in "separate bias" mode it calls self.qkv(x) and adds the bias (the same
            # numbers), so an adapter wrapping qkv (LoRA, lora_qv, SSF) takes part in the forward.
            if getattr(module, "qkv_bias_separate", None) is False:
                module.qkv_bias_separate = True
        self._freeze()

    @property
    def trunk(self) -> nn.Module:
        """The timm model."""
        return self.model.get_submodule(self._trunk_path)

    @property
    def blocks(self) -> nn.Sequential:
        return self.trunk.blocks

    def _embed(self, images: torch.Tensor) -> tuple:
        m = self.trunk
        p = self.patch_size  # the grid is H // p x W // p: pixels past the last whole patch are not seen
        images = images[..., : images.shape[-2] // p * p, : images.shape[-1] // p * p]
        x = m.patch_embed(images)  # (B, h, w, C) with dynamic_img_size, else (B, h*w, C)
        if x.dim() == 4:
            grid = (x.shape[1], x.shape[2])
        else:
            grid = tuple(m.patch_embed.grid_size)
        x = m._pos_embed(x)  # timm's own (resampled) position embeddings and prefix tokens
        rope = None
        if isinstance(x, tuple):  # EVA: tokens and the rotary embedding of this grid, which every block takes
            x, rope = x
        if m.patch_drop is not None and rope is None:  # EVA keeps None here unless patch dropout is on
            x = m.patch_drop(x)
        elif m.patch_drop is not None:
            x, rope = m.patch_drop(x, rope)  # EVA drops the same patches' rotary rows
        return m.norm_pre(x), grid, rope

    def _run_block(self, block: nn.Module, x: torch.Tensor, extra: object = None) -> torch.Tensor:
        return block(x) if extra is None else block(x, rope=extra)

    def _run_block_masked(self, block: nn.Module, x: torch.Tensor, extra: object,
                          mask: torch.Tensor) -> torch.Tensor:
        return block(x, attn_mask=mask) if extra is None else block(x, rope=extra, attn_mask=mask)

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk.norm(x)

    def _pool_image(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.trunk.forward_head(self.final_norm(tokens), pre_logits=True)

    def embed_regions(self, images, boxes):
        if self.embed_dim is None:
            raise NotImplementedError(self._no_joint_message())
        return super().embed_regions(images, boxes)

    def embed_pixels(self, images):
        if self.embed_dim is None:
            raise NotImplementedError(self._no_joint_message())
        return super().embed_pixels(images)


@BACKBONES.register("timm:", doc="timm image models, vision only (ViT/EVA/DINOv2/SigLIP tokens; "
                                 "ConvNeXt/Swin/ResNet stages): timm:<name> or timm:hf-hub:ORG/NAME")
def build_timm(name: str, pretrained: str | None = None, **kwargs) -> Backbone:
    """``timm.create_model(name, num_classes=0, **kwargs)`` wrapped as a backbone (`TimmBackbone` for a
    token model, `TimmFeatureBackbone` for a hierarchical one).

    ``pretrained``: None (random init), a local ``.safetensors`` / ``.pth`` / ``.bin`` file in timm's
    format (read with ``timm.models.load_checkpoint(weights_only=True)``), or a hub request — ``"hub"``
    for the default tag or a tag name such as ``"augreg_in21k"`` — which needs the network.
    ``timm:hf-hub:ORG/NAME`` loads a repository written by ``timm.models.save_for_hf`` / ``push_to_hf_hub``
    (offline: from the Hugging Face cache).
    """
    import timm

    label = f"timm:{name}"
    kwargs = {"num_classes": 0, **kwargs}
    if name.startswith("hf-hub:"):  # architecture and weights from a hub repository (or its cache, offline)
        model = fetching(lambda: _create(timm, name, pretrained=True, **kwargs), label, name, "timm_model")
        return _wrap(model.eval(), label)
    base = name.split(".", 1)[0]
    if not timm.is_model(base):
        raise unknown_name("timm model", base, timm.list_models(),
                           "`python -c 'import timm; print(timm.list_models())'` lists them.")
    if pretrained and is_local_path(pretrained):
        path = check_local_file(pretrained, label)
        model = _create(timm, name, pretrained=False, **kwargs)
        with reading_weights(path):
            timm.models.load_checkpoint(model, path, strict=True, weights_only=True)
    elif pretrained:
        hub_name = name if pretrained in ("hub", "true", "True") else f"{base}.{pretrained}"
        if "." in hub_name and hub_name not in timm.list_pretrained(f"{base}.*"):
            tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{base}.*")]
            raise unknown_name(f"timm pretrained tag for {base}", hub_name.split(".", 1)[1], tags,
                               f"Its tags: {', '.join(tags) or 'none'}; or give a local weights file.")
        if hub_offline():
            raise offline_error(label, pretrained, "timm_model")
        model = fetching(lambda: _create(timm, hub_name, pretrained=True, **kwargs), label, pretrained,
                         "timm_model")
    else:
        model = _create(timm, name, pretrained=False, **kwargs)
    return _wrap(model.eval(), label)


def _create(timm, name: str, **kwargs) -> nn.Module:
    """``timm.create_model`` asking for any input size (``dynamic_img_size``) where the model offers it;
    models without the option (ConvNeXt, ResNet) take any size anyway."""
    try:
        return timm.create_model(name, dynamic_img_size=True, **kwargs)
    except TypeError as err:
        if "dynamic_img_size" not in str(err):
            raise
    return timm.create_model(name, **kwargs)


def _wrap(model: nn.Module, label: str) -> Backbone:
    """ViT-style models (one token sequence) as `TimmBackbone`, staged ones (ConvNeXt, Swin, ResNet) as
    `TimmFeatureBackbone`."""
    if is_hierarchical(model):
        return TimmFeatureBackbone(model, name=label)
    return TimmBackbone(model, name=label)
