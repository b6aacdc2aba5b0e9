"""`build_dataset`: one way from a ``data:`` config to a reader, shared by every task and by pretraining."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ..config import DataConfig
from ..errors import ConfigError
from ..registry import DATASETS
from .images import resolve

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
        raise ConfigError("data.root is empty: set it to the dataset folder in the config or on the command "
                          "line (data.root=/path/to/dataset).")
    if data.class_names and not resolve(Path(data.root), data.class_names, "").is_file():
        raise ConfigError(f"data.class_names: file {data.class_names} does not exist (a relative path is "
                          "taken from data.root); give a text file with one class name per line, or leave "
                          "the key empty to read the names from the data.")
    supplied = {k: v for k, v in extra.items() if k not in data.options}  # data.options win
    if data.class_names and "class_names_file" not in data.options:
        supplied["class_names_file"] = data.class_names
    return DATASETS.create(data.format or default_format, data.options, root=data.root, split=split,
                           transform=transform, skip_bad=data.skip_bad, num_classes=data.num_classes,
                           limit=data.limit, **supplied)
