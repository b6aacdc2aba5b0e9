"""The base class every reader shares: limit, transform and the skip-bad contract.

A subclass fills ``self.samples`` (one record per item, any type) and ``self.class_names``, and
implements ``load(record) -> dict``. ``__getitem__`` calls it, applies the transform (a callable
``dict -> dict``, e.g. `umgkit.data.JointTransform`), and on `BadSampleError` either re-raises
(default) or returns ``None`` when ``skip_bad`` is set. ``None`` items are dropped and counted by
`umgkit.data.collate_dicts`, which works the same inside DataLoader worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from .images import BadSampleError, DatasetError, check_num_classes

__all__ = ["ReaderDataset"]


class ReaderDataset(Dataset):
    """Dataset of dict items with ``class_names``; see the module docstring for the contract."""

    def __init__(self, root: str | Path, split: str, transform: Callable | None = None,
                 skip_bad: bool = False, limit: int | None = None) -> None:
        self.root = Path(root).expanduser()
        self.split = split
        self.transform = transform
        self.skip_bad = bool(skip_bad)
        self.limit = limit
        self.samples: Sequence[Any] = []
        self.class_names: list[str] = []
        self.num_skipped = 0  # bad samples seen by this process (workers keep their own count)

    def _finish(self, num_classes: int | None, what: str) -> None:
        """Apply ``limit`` and check the class count; subclasses call it at the end of ``__init__``."""
        if self.limit is not None:
            if int(self.limit) < 0:
                raise DatasetError(f"limit={self.limit} must be >= 0 (or None for the whole split).")
            self.samples = self.samples[: int(self.limit)]
        check_num_classes(num_classes, self.class_names, what)

    def load(self, record: Any) -> dict[str, Any]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        try:
            item = self.load(self.samples[index])
        except BadSampleError:
            if not self.skip_bad:
                raise
            self.num_skipped += 1
            return None
        return self.transform(item) if self.transform is not None else item

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root='{self.root}', split='{self.split}', n={len(self)}, "
                f"classes={len(self.class_names)})")
