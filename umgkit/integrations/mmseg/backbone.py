"""`UMGKitBackbone` for mmseg: returns the 4-level list ``[p2, p3, p4, p5]`` decode heads index into.

UperNet / FPN heads take ``in_channels=[C] * 4`` and ``in_index=[0, 1, 2, 3]`` (strides 4, 8, 16, 32);
an auxiliary FCN head usually reads ``in_index=2`` (stride 16). Pixel statistics: mmseg's
``SegDataPreProcessor`` normalises RGB (``bgr_to_rgb=True``) 0-255 images with its ``mean`` / ``std``;
pass the same values as ``pixel_mean`` / ``pixel_std`` here (None = the backbone's own statistics, i.e.
the preprocessor already uses them) and the bridge converts exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from mmengine.model import BaseModule
from mmseg.registry import MODELS

from .._common import AdaptedPyramid

__all__ = ["UMGKitBackbone"]

_LEVELS = ("p2", "p3", "p4", "p5")


@MODELS.register_module()
class UMGKitBackbone(BaseModule):
    """``forward(images (B, 3, H, W)) -> [ (B, C, H/4, W/4), ..., (B, C, H/32, W/32) ]`` for ``out_indices``.

    Trainable: the adapter's parameters (inside ``umgkit.backbone``) and the pyramid (``umgkit.neck``);
    the ViT itself stays frozen and in eval mode whatever ``train()`` is called with.
    """

    def __init__(self, backbone: str = "umg:base16", pretrained: str | None = None, adapter: str = "lora_qv",
                 adapter_options: dict[str, Any] | None = None,
                 backbone_options: dict[str, Any] | None = None, out_channels: int = 256,
                 out_indices: Sequence[int] = (0, 1, 2, 3), pixel_mean: Sequence[float] | None = None,
                 pixel_std: Sequence[float] | None = None, grad_checkpointing: bool = False,
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.umgkit = AdaptedPyramid(backbone=backbone, pretrained=pretrained, adapter=adapter,
                                     adapter_options=adapter_options, backbone_options=backbone_options,
                                     out_channels=out_channels, with_p6=False, pixel_mean=pixel_mean,
                                     pixel_std=pixel_std, bgr=False, grad_checkpointing=grad_checkpointing)
        bad = [i for i in out_indices if not 0 <= i < len(_LEVELS)]
        if bad:
            raise ValueError(f"UMGKitBackbone: out_indices {list(out_indices)} has {bad}; valid indices are "
                             f"0..3 for strides 4, 8, 16, 32.")
        self.out_indices = tuple(int(i) for i in out_indices)

    def init_weights(self) -> None:
        """Nothing to do: the trunk was loaded at construction and the adapter / pyramid initialise
        themselves; mmengine's default would re-initialise children that define ``init_weights``."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.umgkit(x)
        return [feats[_LEVELS[i]] for i in self.out_indices]

    @property
    def adapter(self):
        return self.umgkit.adapter
