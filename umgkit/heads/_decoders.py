"""Dense decoders over a ``{"p2".."p5"}`` pyramid (strides 4..32) -> one stride-4 feature map.

`FPNDecoder` is the Semantic FPN of Kirillov et al. (2019, "Panoptic Feature Pyramid Networks"):
an FPN (lateral 1x1 convs, top-down nearest up-sampling + add, 3x3 output convs), then per level a
"scale head" of ``log2(stride / 4)`` (at least one) conv3x3-GroupNorm-ReLU stages, each followed by a 2x
bilinear up-sampling, and the levels summed at stride 4. `UperDecoder` is UperNet's (Xiao et al. 2018):
a pyramid pooling module on the coarsest level feeding the same FPN, then every level resized to stride 4,
concatenated and fused by a 3x3 conv.

Up-sampling always targets the next level's actual size (not a fixed factor), so inputs whose side is
not a multiple of 32 (odd-sized pyramid levels) work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LEVELS", "conv_norm_act", "FPNDecoder", "UperDecoder"]

LEVELS = ("p2", "p3", "p4", "p5")  # fine -> coarse; strides 4, 8, 16, 32


def conv_norm_act(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    """conv (no bias) + GroupNorm (32 groups, fewer when ``cout`` is small) + ReLU.

    Each group keeps at least 2 channels, so a 1x1 map (p5 of a small window) still normalises.
    """
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if cout % g == 0 and (cout // g >= 2 or g == 1))
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
                         nn.GroupNorm(groups, cout), nn.ReLU(inplace=True))


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


class _FPN(nn.Module):
    """Lateral 1x1 + top-down add + 3x3 output convs; returns the refined levels, fine -> coarse."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(in_channels, channels, 1) for _ in LEVELS)
        self.output = nn.ModuleList(conv_norm_act(channels, channels) for _ in LEVELS)

    def forward(self, feats: list[torch.Tensor], top: torch.Tensor | None = None) -> list[torch.Tensor]:
        lat = [conv(f) for conv, f in zip(self.lateral, feats, strict=True)]
        if top is not None:  # UperNet: the coarsest lateral is replaced by the PPM output
            lat[-1] = top
        for i in range(len(lat) - 2, -1, -1):
            lat[i] = lat[i] + _resize(lat[i + 1], lat[i].shape[-2:], "nearest")
        return [conv(x) for conv, x in zip(self.output, lat, strict=True)]


class FPNDecoder(nn.Module):
    """Semantic FPN: ``{"p2": (B, Cin, H/4, W/4), ...}`` -> ``(B, channels, H/4, W/4)``."""

    def __init__(self, *, in_channels: int, channels: int = 128) -> None:
        super().__init__()
        self.channels = int(channels)
        self.fpn = _FPN(in_channels, channels)
        self.scale_heads = nn.ModuleList()
        for level in range(len(LEVELS)):  # level k has stride 4 * 2**k: k 2x up-samplings to stride 4
            self.scale_heads.append(nn.ModuleList(conv_norm_act(channels, channels)
                                                  for _ in range(max(level, 1))))

    def forward(self, pyramid: dict[str, torch.Tensor]) -> torch.Tensor:
        feats = self.fpn([pyramid[k] for k in LEVELS])
        size = feats[0].shape[-2:]
        out = None
        for level, (x, stages) in enumerate(zip(feats, self.scale_heads, strict=True)):
            for i, stage in enumerate(stages):
                x = stage(x)
                if level > 0:  # up 2x, the last step straight to p2's size (odd sizes round)
                    target = size if i == len(stages) - 1 else (x.shape[-2] * 2, x.shape[-1] * 2)
                    x = _resize(x, target)
            out = x if out is None else out + x
        return out


class UperDecoder(nn.Module):
    """UperNet: PPM (scales 1, 2, 3, 6) on p5 + FPN, all levels at stride 4, concat, 3x3 fuse.

    ``{"p2": (B, Cin, H/4, W/4), ...}`` -> ``(B, channels, H/4, W/4)``.
    """

    def __init__(self, *, in_channels: int, channels: int = 128, pool_scales=(1, 2, 3, 6)) -> None:
        super().__init__()
        self.channels = int(channels)
        self.pool_scales = tuple(int(s) for s in pool_scales)
        self.ppm = nn.ModuleList(conv_norm_act(in_channels, channels, 1) for _ in self.pool_scales)
        self.ppm_fuse = conv_norm_act(in_channels + len(self.pool_scales) * channels, channels)
        self.fpn = _FPN(in_channels, channels)
        self.fuse = conv_norm_act(len(LEVELS) * channels, channels)

    def _ppm(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [x] + [_resize(conv(F.adaptive_avg_pool2d(x, s)), size)
                      for s, conv in zip(self.pool_scales, self.ppm, strict=True)]
        return self.ppm_fuse(torch.cat(outs, dim=1))

    def forward(self, pyramid: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = [pyramid[k] for k in LEVELS]
        feats = self.fpn(inputs, top=self._ppm(inputs[-1]))
        size = feats[0].shape[-2:]
        return self.fuse(torch.cat([_resize(f, size) for f in feats], dim=1))
