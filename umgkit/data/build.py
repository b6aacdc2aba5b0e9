"""`build_dataset`: one way from a ``data:`` config to a reader, shared by every task and by pretraining."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from ..config import DataConfig
from ..registry import DATASETS

__all__ = ["build_dataset"]


def build_dataset(data: DataConfig, split: str, transform: Callable | None, default_format: str,
                  **extra: Any) -> Dataset:
    """The reader ``data.format`` (or the task's default) over ``data.root`` for ``split``.

    ``data.options`` and ``extra`` (task-supplied, e.g. ``reduce_zero_label``) go to the reader; the
    class count is checked against ``data.num_classes`` by the reader itself. When ``data.synthetic.out``
    is set, the synthetic world is generated there first (reused when unchanged).
    """
    if data.synthetic.out:
        from .synth import ensure_world

        s = data.synthetic
        ensure_world(s.out, num=s.num, size=s.size, seed=s.seed, val_fraction=s.val_fraction)
    if not data.root:
        raise ValueError("data.root is empty: set it to the dataset folder in the config or on the command "
                         "line (data.root=/path/to/dataset).")
    options = {**extra, **data.options}
    if data.class_names:
        options.setdefault("class_names_file", data.class_names)
    return DATASETS.build(data.format or default_format, root=data.root, split=split, transform=transform,
                          skip_bad=data.skip_bad, num_classes=data.num_classes, limit=data.limit, **options)
