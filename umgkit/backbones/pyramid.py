"""ViTDet's simple feature pyramid: one stride-``patch_size`` ViT map -> strides 4, 8, 16, 32.

Keys follow detectron2 / ViTDet: ``p{k}`` has stride ``2**k`` (``p2`` = 4 ... ``p5`` = 32), so FPN-style
heads and torchvision detection parts read them directly. Up-sampling uses stride-2 transposed convs
(LayerNorm + GELU between two of them), down-sampling max-pools, then each level gets a 1x1 and a 3x3 conv
with channel LayerNorm, as in Li et al. (2022). Patch sizes that are not a power of two (ViT-L/14) are
first resized bilinearly to the stride-16 grid, so every level has its nominal stride.

The learned pyramid is trainable and belongs to the head; `parameter_free_pyramid` gives the same keys
and strides without parameters (bilinear up, max-pool down) for heads that want none.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SimpleFeaturePyramid", "LayerNorm2d", "parameter_free_pyramid"]

STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of ``(B, C, H, W)`` maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def _base_stride(patch_size: int) -> int:
    """The stride the levels are built from: the patch size if a power of two, else 16."""
    return patch_size if patch_size & (patch_size - 1) == 0 else 16


def _to_base(fmap: torch.Tensor, patch_size: int) -> torch.Tensor:
    base = _base_stride(patch_size)
    if base == patch_size:
        return fmap
    h, w = fmap.shape[-2:]
    size = (max(1, round(h * patch_size / base)), max(1, round(w * patch_size / base)))
    return F.interpolate(fmap, size=size, mode="bilinear", align_corners=False)


def _log2_ratio(patch_size: int, stride: int) -> int:
    """Number of 2x up-samplings (positive) or down-samplings (negative) from the base to ``stride``."""
    return int(math.log2(_base_stride(patch_size))) - int(math.log2(stride))


class SimpleFeaturePyramid(nn.Module):
    """Learned pyramid over a ``(B, width, h, w)`` map of stride ``patch_size``.

    Returns ``{"p2": (B, out_channels, ~H/4, ~W/4), ..., "p5": (B, out_channels, ~H/32, ~W/32)}``.
    Build it from a backbone's declared shapes with `from_backbone`; its parameters are trainable.
    """

    STRIDES = STRIDES

    def __init__(self, *, width: int, patch_size: int, out_channels: int = 256) -> None:
        super().__init__()
        self.width, self.patch_size, self.out_channels = int(width), int(patch_size), int(out_channels)
        self.stages = nn.ModuleDict({k: self._stage(_log2_ratio(patch_size, s)) for k, s in STRIDES.items()})

    @classmethod
    def from_backbone(cls, backbone: nn.Module, out_channels: int = 256) -> SimpleFeaturePyramid:
        return cls(width=backbone.width, patch_size=backbone.patch_size, out_channels=out_channels)

    def _stage(self, ups: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        c = self.width
        for i in range(max(ups, 0)):
            if i:
                layers += [LayerNorm2d(c), nn.GELU()]
            layers.append(nn.ConvTranspose2d(c, max(c // 2, 1), kernel_size=2, stride=2))
            c = max(c // 2, 1)
        if ups < 0:
            layers.append(nn.MaxPool2d(kernel_size=2 ** -ups, stride=2 ** -ups))
        layers += [nn.Conv2d(c, self.out_channels, 1, bias=False), LayerNorm2d(self.out_channels),
                   nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1, bias=False),
                   LayerNorm2d(self.out_channels)]
        return nn.Sequential(*layers)

    def forward(self, fmap: torch.Tensor) -> dict[str, torch.Tensor]:
        if fmap.shape[1] != self.width:
            raise ValueError(f"SimpleFeaturePyramid built for width {self.width}, "
                             f"got {fmap.shape[1]} channels.")
        base = _to_base(fmap, self.patch_size)
        return {k: stage(base) for k, stage in self.stages.items()}


def parameter_free_pyramid(fmap: torch.Tensor, patch_size: int) -> dict[str, torch.Tensor]:
    """Same keys / strides as `SimpleFeaturePyramid`, channels unchanged, no parameters."""
    base = _to_base(fmap, patch_size)
    out = {}
    for key, stride in STRIDES.items():
        k = _log2_ratio(patch_size, stride)
        if k > 0:
            out[key] = F.interpolate(base, scale_factor=2 ** k, mode="bilinear", align_corners=False)
        elif k < 0:
            out[key] = F.max_pool2d(base, kernel_size=2 ** -k, stride=2 ** -k)
        else:
            out[key] = base
    return out
