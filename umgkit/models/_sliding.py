"""Whole-image and sliding-window inference for dense predictors, on any image size.

``predict`` maps images ``(B, 3, h, w)`` to logits ``(B, K, h, w)`` at the input resolution. Sliding
windows follow mmseg's grid: ``ceil((H - window) / stride) + 1`` windows per axis, the last one shifted
back to end at the border, so every pixel is covered; logits of overlapping windows are summed and
divided by a per-pixel count map.

Images smaller than the window: by default the window shrinks to the image (mmseg's behaviour), so a
window covering the whole image is exactly whole-image inference. With ``pad=True`` the image is
zero-padded at the bottom / right up to the window instead (for predictors that need a fixed input
size; zero is the mean colour after normalisation) and the padded part of the output is dropped; this
changes what a global-attention backbone sees, so it is not bit-equal to whole-image inference.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["whole_inference", "slide_inference", "window_starts"]

Predictor = Callable[[torch.Tensor], torch.Tensor]


def _pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    pair = (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"sliding window {name}={value!r}: give a positive int or [height, width].")
    return pair  # type: ignore[return-value]


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets along one axis: ``0, stride, ...`` with the last window ending at ``length``."""
    if length <= window:
        return [0]
    count = -(-(length - window) // stride) + 1
    return [min(i * stride, length - window) for i in range(count)]


def whole_inference(predict: Predictor, images: torch.Tensor) -> torch.Tensor:
    """``(B, K, H, W)`` logits from one pass; the predictor's output is resized to ``(H, W)`` if needed."""
    logits = predict(images)
    if logits.shape[-2:] != images.shape[-2:]:
        logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return logits


def slide_inference(predict: Predictor, images: torch.Tensor, window: int | tuple[int, int],
                    stride: int | tuple[int, int], pad: bool = False) -> torch.Tensor:
    """``(B, K, H, W)`` logits averaged over overlapping windows (see the module docstring)."""
    (wh, ww), (sh, sw) = _pair(window, "window"), _pair(stride, "stride")
    if sh > wh or sw > ww:
        raise ValueError(f"sliding window stride {(sh, sw)} exceeds the window {(wh, ww)}: pixels between "
                         "windows would get no prediction; use stride <= window.")
    _, _, height, width = images.shape
    if pad and (height < wh or width < ww):
        padded = F.pad(images, (0, max(ww - width, 0), 0, max(wh - height, 0)))
        return slide_inference(predict, padded, (wh, ww), (sh, sw))[..., :height, :width]
    wh, ww = min(wh, height), min(ww, width)
    total: torch.Tensor | None = None
    count = images.new_zeros(1, 1, height, width)
    for y in window_starts(height, wh, sh):
        for x in window_starts(width, ww, sw):
            logits = whole_inference(predict, images[:, :, y:y + wh, x:x + ww])  # (B, K, wh, ww)
            if total is None:
                total = logits.new_zeros(images.shape[0], logits.shape[1], height, width)
            total[:, :, y:y + wh, x:x + ww] += logits
            count[:, :, y:y + wh, x:x + ww] += 1
    return total / count
