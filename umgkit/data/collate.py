"""Batching dict items, dropping and counting skipped (``None``) samples.

Contract with the readers and the engine: a reader built with ``skip_bad=True`` returns ``None`` for a
bad sample; `collate_dicts` drops those and reports how many in ``batch["num_skipped"]`` (a plain
int), so the count survives DataLoader worker processes; the engine sums it over an epoch and reports
it. A batch whose items were all bad is ``{"num_skipped": n, "batch_size": 0}``: skip it.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch

from .transforms import INSTANCE_KEYS

__all__ = ["collate_dicts", "LIST_KEYS"]

# always kept as lists (one entry per item), even when every item happens to have the same shape
LIST_KEYS = frozenset(INSTANCE_KEYS) | {"captions", "tags", "path", "file_name", "caption"}


def collate_dicts(batch: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Merge item dicts into one batch dict.

    Tensors of equal shape are stacked (``image`` -> (B, 3, H, W)); Python numbers become a tensor
    (``label`` -> (B,)); variable-size things (boxes, masks, captions, strings, or tensors whose shapes
    differ) stay lists of length B. Also sets ``batch_size`` and ``num_skipped`` (ints).
    """
    items = [b for b in batch if b is not None]
    out: dict[str, Any] = {"num_skipped": len(batch) - len(items), "batch_size": len(items)}
    if not items:
        return out
    for key in items[0]:
        values = [it.get(key) for it in items]
        out[key] = _merge(key, values)
    return out


def _merge(key: str, values: list[Any]) -> Any:
    if key in LIST_KEYS:
        return values
    first = values[0]
    if isinstance(first, torch.Tensor) and all(isinstance(v, torch.Tensor) for v in values):
        if all(v.shape == first.shape for v in values):
            return torch.stack(values)
        return values
    if all(isinstance(v, numbers.Number) and not isinstance(v, bool) for v in values):
        dtype = torch.int64 if all(isinstance(v, numbers.Integral) for v in values) else torch.float32
        return torch.tensor(values, dtype=dtype)
    if all(isinstance(v, bool) for v in values):
        return torch.tensor(values, dtype=torch.bool)
    return values
