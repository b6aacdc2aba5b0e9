"""timm's hierarchical models (ConvNeXt, Swin, ResNet, ...) behind the backbone contract (vision only).

They have no single token sequence: their stages make feature maps at strides 4, 8, 16 and 32, read with
timm's ``forward_intermediates``. Dense heads take those stages directly (`neck_input` returns
``{"p2": stride 4, ..., "p5": stride 32}`` and `make_neck` a `StageNeck` that maps each to the head's
width) instead of a simple feature pyramid built from one map. ``dense`` is the last stage,
``intermediate`` indexes stages, ``encode_image`` is timm's pooled pre-logits feature (L2-normalised).

Adapter targets: transformer stages (Swin) use the timm block layout (``norm1, attn.qkv, attn.proj, norm2,
mlp.fc1, mlp.fc2``, one block list per stage); ConvNeXt blocks (``conv_dw, norm, mlp.fc1, mlp.fc2``) take
the LoRA family, SSF, BitFit and the bottleneck adapters on their MLP; convolution-only stages (ResNet
``layerN`` lists) take the LoRA family on their convolutions, BitFit, full fine-tuning or none (the table
in docs/backbones.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .base import Backbone, ShapeSpec, l2_normalize
from .pyramid import LayerNorm2d

__all__ = ["TimmFeatureBackbone", "StageNeck", "is_hierarchical"]

LEVELS = {4: "p2", 8: "p3", 16: "p4", 32: "p5"}


def is_hierarchical(model: nn.Module) -> bool:
    """A timm model read through its stages (no ViT token sequence)."""
    vit_like = all(hasattr(model, a) for a in ("patch_embed", "_pos_embed", "blocks"))
    staged = hasattr(model, "forward_intermediates") and bool(getattr(model, "feature_info", None))
    return staged and not vit_like


class StageNeck(nn.Module):
    """Each stage map to ``out_channels`` (1x1 conv, LayerNorm, 3x3 conv, LayerNorm, as the simple pyramid's
    output layers): ``{"p2": (B, c2, H/4, W/4), ...}`` -> same keys, ``out_channels`` each. Trainable,
    owned by the head."""

    def __init__(self, in_channels: dict[str, int], out_channels: int = 256) -> None:
        super().__init__()
        self.out_channels = int(out_channels)
        self.stages = nn.ModuleDict({
            k: nn.Sequential(nn.Conv2d(c, out_channels, 1, bias=False), LayerNorm2d(out_channels),
                             nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                             LayerNorm2d(out_channels))
            for k, c in in_channels.items()})

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: stage(feats[k]) for k, stage in self.stages.items()}


class TimmFeatureBackbone(Backbone):
    """Wraps a hierarchical timm model (``num_classes=0``) read through ``forward_intermediates``."""

    num_prefix_tokens = 0

    def __init__(self, model: nn.Module, *, name: str, trunk_path: str = "", embed_dim: int | None = None,
                 has_text: bool = False) -> None:
        trunk = model.get_submodule(trunk_path)
        info = list(trunk.feature_info)
        self.stage_info = [(int(f["num_chs"]), int(f["reduction"]), str(f["module"])) for f in info]
        levels = [r for _, r, _ in self.stage_info if r in LEVELS]
        if sorted(levels) != [4, 8, 16, 32]:
            raise NotImplementedError(f"{name}: stages at strides {[r for _, r, _ in self.stage_info]}; "
                                      "dense heads need one stage at each of 4, 8, 16 and 32.")
        cfg = getattr(trunk, "pretrained_cfg", {}) or {}
        size = cfg.get("input_size", (3, 224, 224))[1:]
        super().__init__(name=name, embed_dim=embed_dim, width=int(trunk.num_features),
                         patch_size=self.stage_info[-1][1], num_layers=len(self.stage_info),
                         has_text=has_text,
                         image_size=tuple(size), image_mean=cfg.get("mean", (0.485, 0.456, 0.406)),
                         image_std=cfg.get("std", (0.229, 0.224, 0.225)))
        self.model, self._trunk_path = model, trunk_path
        self._freeze()

    @property
    def trunk(self) -> nn.Module:
        """The timm model (``model`` itself, or inside it at ``trunk_path``)."""
        return self.model.get_submodule(self._trunk_path)

    @property
    def blocks(self) -> nn.ModuleList:
        """The stages (``feature_info`` modules), in order."""
        return nn.ModuleList(self.trunk.get_submodule(path) for _, _, path in self.stage_info)

    def set_grad_checkpointing(self, enabled: bool = True) -> Backbone:
        self.trunk.set_grad_checkpointing(enabled)
        return super().set_grad_checkpointing(enabled)

    # ------------------------------------------------------------------------------------ the contract
    def _stages(self, images: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        return self.trunk.forward_intermediates(images, indices=list(indices), intermediates_only=True,
                                                stop_early=True, output_fmt="NCHW")

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        m = self.trunk
        return l2_normalize(m.forward_head(m.forward_features(images), pre_logits=True))

    def dense(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, width, H/32, W/32)``: the last stage's output."""
        return self._stages(images, [len(self.stage_info) - 1])[0]

    def intermediate(self, images: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """Outputs of stages ``layers`` (negative counts from the end), each at its own stride."""
        idx = self._layer_indices(layers)
        order = sorted(set(idx))
        outs = dict(zip(order, self._stages(images, order), strict=True))
        return [outs[i] for i in idx]

    def neck_input(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        keep = [i for i, (_, r, _) in enumerate(self.stage_info) if r in LEVELS]
        maps = self._stages(images, keep)
        return {LEVELS[self.stage_info[i][1]]: fmap for i, fmap in zip(keep, maps, strict=True)}

    def make_neck(self, out_channels: int = 256) -> StageNeck:
        return StageNeck({LEVELS[r]: c for c, r, _ in self.stage_info if r in LEVELS}, out_channels)

    def pyramid_shapes(self, channels: int | None = None) -> dict[str, ShapeSpec]:
        return {LEVELS[r]: ShapeSpec(c if channels is None else int(channels), r)
                for c, r, _ in self.stage_info if r in LEVELS}

    def pyramid(self, images: torch.Tensor, channels: int | None = None,
                neck: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """The stages at strides 4..32 (their own channels), or ``neck`` applied to them."""
        feats = self.neck_input(images)
        if neck is not None:
            return neck(feats)
        if channels is not None:
            raise ValueError(f"pyramid: channels={channels} needs learned layers; build "
                             f"backbone.make_neck({channels}) in your head and pass it as neck=.")
        return feats

    def set_dense_path(self, path: str) -> Backbone:
        if path != "project":
            raise ConfigError(f"{self.name}: the '{path}' dense path reads the last block of a token ViT; "
                              "a hierarchical model has stages. Leave model.dense at 'project'.",
                              key="model.dense")
        return self

    # ------------------------------------------------------------------- what a token model has only
    def _no_tokens(self) -> NotImplementedError:
        return NotImplementedError(f"{self.name} is a hierarchical model without a token sequence; use "
                                   "dense(), intermediate(), pyramid() or encode_image().")

    def _forward(self, images, take=(), stop_early=False):
        raise self._no_tokens()

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        raise self._no_tokens()

    def embed_regions(self, images, boxes):
        raise NotImplementedError(self._no_joint_message())

    def embed_pixels(self, images):
        raise NotImplementedError(self._no_joint_message())

