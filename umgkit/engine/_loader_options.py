"""DataLoader settings the engine's loaders share: workers that stay, read ahead, and pinned batches."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["loader_options"]


def loader_options(num_workers: int, *, persistent: bool) -> dict[str, Any]:
    """Keyword arguments for ``DataLoader``.

    Pinned host memory lets the copy to a GPU run asynchronously (``non_blocking``); persistent workers
    skip re-forking (and re-importing) at every epoch, which a stream cannot use since it re-plans its
    shards per epoch in the workers' copy of it; two batches read ahead per worker hide decode time.
    """
    options: dict[str, Any] = {"num_workers": num_workers, "pin_memory": torch.cuda.is_available()}
    if num_workers > 0:
        options.update(persistent_workers=persistent, prefetch_factor=2)
    return options
