"""Framework-free parts shared by the Detectron2 and MMSegmentation bridges.

- `AdaptedPyramid`: a umgkit backbone with an adapter applied, a trainable ViTDet simple feature pyramid
  (``p2..p5``) and optionally ``p6`` (a stride-2 max-pool of ``p5``, as ViTDet / FPN add it), behind an
  input re-normalisation that lets the framework normalise pixels its own way.

Their checkpoints are written and read by `umgkit.integrations._checkpoint` (the engine's layout).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..adapters import apply_adapter, save_adapter
from ..backbones import SimpleFeaturePyramid, create_backbone

__all__ = ["AdaptedPyramid", "InputRenormalizer", "pyramid_strides"]

_STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}


def pyramid_strides(with_p6: bool) -> dict[str, int]:
    """``{"p2": 4, ..., "p5": 32}`` plus ``"p6": 64`` when asked for."""
    return {k: s for k, s in _STRIDES.items() if with_p6 or k != "p6"}


class InputRenormalizer(nn.Module):
    """Maps images normalised by a framework to the normalisation the backbone was trained with.

    A framework hands over ``(x - mean_f) / std_f`` of 0-255 pixels in its channel order (detectron2:
    ``INPUT.FORMAT`` + ``MODEL.PIXEL_MEAN/STD``; mmseg: ``data_preprocessor``). The backbone wants
    ``(rgb / 255 - mean_b) / std_b``. Both are per-channel affine maps, so one ``x * scale + shift`` (after
    a channel flip for BGR) converts exactly; when the framework already uses the backbone's statistics
    it is skipped. Padding added by the framework after normalisation (zeros) maps to a constant.
    """

    def __init__(self, *, pixel_mean: Sequence[float], pixel_std: Sequence[float], bgr: bool,
                 image_mean: Sequence[float], image_std: Sequence[float]) -> None:
        super().__init__()
        mean_f = torch.tensor([float(v) for v in pixel_mean], dtype=torch.float64)
        std_f = torch.tensor([float(v) for v in pixel_std], dtype=torch.float64)
        if mean_f.numel() != 3 or std_f.numel() != 3:
            raise ValueError(f"pixel_mean / pixel_std need 3 values (one per channel), got "
                             f"{list(pixel_mean)} / {list(pixel_std)}.")
        if bgr:  # bring the framework's statistics into RGB order, matching the flipped input
            mean_f, std_f = mean_f.flip(0), std_f.flip(0)
        mean_b = 255.0 * torch.tensor(list(image_mean), dtype=torch.float64)
        std_b = 255.0 * torch.tensor(list(image_std), dtype=torch.float64)
        scale, shift = std_f / std_b, (mean_f - mean_b) / std_b  # x_b = x_f * scale + shift
        self.bgr = bool(bgr)
        self.identity = (not self.bgr and torch.allclose(scale, torch.ones_like(scale), atol=1e-6)
                         and torch.allclose(shift, torch.zeros_like(shift), atol=1e-6))
        self.register_buffer("scale", scale.float().view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.float().view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 3, H, W)
        if self.identity:
            return x
        if self.bgr:
            x = x.flip(1)
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)


class AdaptedPyramid(nn.Module):
    """Frozen umgkit backbone + adapter + trainable simple feature pyramid.

    ``forward(images)`` takes ``(B, 3, H, W)`` normalised as the framework does (see `InputRenormalizer`)
    and returns ``{"p2": (B, out_channels, H/4, W/4), ..., "p5": (..., H/32, W/32)}`` plus
    ``"p6": (..., H/64, W/64)`` when ``with_p6``; sizes are exact when ``H, W`` are multiples of
    `size_divisibility`. Trainable parameters: the adapter's (inside ``backbone``) and ``neck``'s.
    """

    def __init__(self, *, backbone: str, pretrained: str | None = None, adapter: str = "frozen",
                 adapter_options: Mapping[str, Any] | None = None,
                 backbone_options: Mapping[str, Any] | None = None, out_channels: int = 256,
                 with_p6: bool = True, pixel_mean: Sequence[float] | None = None,
                 pixel_std: Sequence[float] | None = None, bgr: bool = False,
                 grad_checkpointing: bool = False) -> None:
        super().__init__()
        from .._builtins import import_builtins

        import_builtins()
        self.backbone = create_backbone(backbone, pretrained=pretrained or None,
                                        **dict(backbone_options or {}))
        self.adapter = apply_adapter(self.backbone, adapter, **dict(adapter_options or {}))
        if grad_checkpointing:
            self.backbone.set_grad_checkpointing(True)
        self.neck = SimpleFeaturePyramid.from_backbone(self.backbone, out_channels=out_channels)
        mean_b, std_b = self.backbone.image_mean, self.backbone.image_std
        self.renorm = InputRenormalizer(
            pixel_mean=[255.0 * m for m in mean_b] if pixel_mean is None else pixel_mean,
            pixel_std=[255.0 * s for s in std_b] if pixel_std is None else pixel_std,
            bgr=bgr, image_mean=mean_b, image_std=std_b)
        self.with_p6 = bool(with_p6)
        self.out_channels = int(out_channels)
        self.strides = pyramid_strides(self.with_p6)
        patch = self.backbone.patch_size
        # the patch grid must tile the image and the coarsest level must divide it evenly
        coarsest = max(self.strides.values())
        self.size_divisibility = patch * coarsest // math.gcd(patch, coarsest)
        self.info = {"backbone": backbone, "pretrained": pretrained or None, "adapter": adapter,
                     "adapter_options": self.adapter.options, "out_channels": self.out_channels,
                     "with_p6": self.with_p6}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone.pyramid(self.renorm(images), neck=self.neck)  # p2..p5
        if self.with_p6:
            feats["p6"] = F.max_pool2d(feats["p5"], kernel_size=1, stride=2)
        return feats

    def export_adapter(self, directory: str | os.PathLike) -> Path:
        """Write the adapter alone (``save_adapter`` format) so a plain umgkit backbone can load it."""
        return save_adapter(self.backbone, self.adapter, directory)
