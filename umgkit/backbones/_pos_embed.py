"""Position-embedding resampling so every ViT backbone accepts any input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["resample_pos_embed"]


def resample_pos_embed(pos: torch.Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int],
                       num_prefix: int = 1) -> torch.Tensor:
    """Resample learned absolute position embeddings to another patch grid.

    ``pos`` is ``(P + h*w, C)`` or ``(1, P + h*w, C)`` with ``P = num_prefix`` prefix (class) tokens first
    and the patch grid row-major. Prefix embeddings are kept as they are; the grid part is resized with
    bicubic interpolation (``align_corners=False``, as CLIP/timm do). Returns the same rank as the input;
    when the grids are equal the input itself is returned, so native-size outputs stay bit-exact.
    """
    if tuple(src_grid) == tuple(dst_grid):
        return pos
    squeeze = pos.dim() == 2
    pos = pos.unsqueeze(0) if squeeze else pos
    prefix, grid = pos[:, :num_prefix], pos[:, num_prefix:]
    (sh, sw), (dh, dw) = src_grid, dst_grid
    if grid.shape[1] != sh * sw:
        raise ValueError(f"position embedding has {grid.shape[1]} grid entries, expected {sh}x{sw}.")
    grid = grid.reshape(1, sh, sw, -1).permute(0, 3, 1, 2).float()  # (1, C, sh, sw)
    grid = F.interpolate(grid, size=(dh, dw), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, dh * dw, -1).to(pos.dtype)
    out = torch.cat([prefix, grid], dim=1)
    return out[0] if squeeze else out
