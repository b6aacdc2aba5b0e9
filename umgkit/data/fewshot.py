"""The few-shot protocol: K images per class with a seed, and the base-to-novel class split.

It lives with the data, not with the methods, so that every method trained at the same ``(K, seed)`` sees
the same images, whatever its adapter, head, backbone or transform (the sample depends only on the
labels of the train split, ``K`` and the seed).

- `sample_shots`: which K images of each class. An image's rank inside its class is a hash of
  ``(seed, class label, position of the image among that class's images in reader order)``; a class keeps
  its K lowest ranks. The sample is therefore *nested*: at one seed the 1-shot image is one of the
  4 shots, which are among the 16 shots. A hash rather than a random generator keeps the sample the same
  across numpy / torch versions and platforms.
- `split_classes`: CoOp's base-to-novel split (``subsample_classes``): over the classes in label order,
  ``base`` is the first ``ceil(C / 2)``, ``novel`` the rest.
- `FewShotDataset`: a view of any classification reader (items ``{"image", "label", "path"}``,
  ``class_names``) restricted to some items and classes; kept classes are renumbered from 0 in their old
  order and ``class_names`` follows.
- `fewshot_splits`: what the classification task calls with ``data.fewshot``: shots and classes on the
  train split, classes only on the val split.

Example:
    >>> sample_shots([0, 0, 0, 1, 1, 1], shots=1, seed=0)
    [1, 5]
    >>> sample_shots([0, 0, 0, 1, 1, 1], shots=2, seed=0)  # nested: contains the 1-shot sample
    [0, 1, 4, 5]
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

from torch.utils.data import Dataset

from ..config.schema import FewShotConfig
from .images import DatasetError

__all__ = ["FewShotDataset", "dataset_labels", "fewshot_splits", "sample_shots", "split_classes"]

CLASS_SPLITS = ("all", "base", "novel")


def _rank(seed: int, label: int, position: int) -> bytes:
    return hashlib.blake2b(f"{seed}:{label}:{position}".encode(), digest_size=8).digest()


def sample_shots(labels: Sequence[int], shots: int, seed: int, *, class_names: Sequence[str] | None = None,
                 classes: Sequence[int] | None = None) -> list[int]:
    """Sorted indices into ``labels``: ``shots`` per class (see the module docstring for how they are chosen).

    The classes sampled are ``classes`` when given, else ``range(len(class_names))`` when names are given
    (so a class with no image at all is reported), else the distinct labels ``>= 0``; a class's shots do
    not depend on which other classes are sampled. A negative label (a reader's unknown class) is never
    sampled. Raises `DatasetError` naming every class that has fewer than ``shots`` images.
    """
    if int(shots) < 1:
        raise DatasetError(f"shots={shots}: the few-shot sampler needs at least 1 image per class.")
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        if int(label) >= 0:
            by_class.setdefault(int(label), []).append(index)
    if classes is None:
        classes = range(len(class_names)) if class_names is not None else sorted(by_class)
    short = [c for c in classes if len(by_class.get(c, [])) < shots]
    if short:
        def name(c: int) -> str:
            shown = f"'{class_names[c]}' " if class_names is not None else ""
            return f"{shown}(label {c}): {len(by_class.get(c, []))}"
        more = f"; and {len(short) - 5} more" if len(short) > 5 else ""
        listed = "; ".join(name(c) for c in short[:5]) + more
        raise DatasetError(f"{len(short)} class(es) have fewer than shots={shots} images in the split "
                           f"sampled from: {listed}. Lower data.fewshot.shots or add images.")
    chosen: list[int] = []
    for c in classes:
        members = by_class[c]
        order = sorted(range(len(members)), key=lambda j, c=c: _rank(int(seed), c, j))
        chosen += [members[j] for j in order[: int(shots)]]
    return sorted(chosen)


def split_classes(num_classes: int, which: str) -> list[int]:
    """Labels kept by ``which``: ``all``, ``base`` (the first ``ceil(C / 2)``) or ``novel`` (the rest)."""
    if which not in CLASS_SPLITS:
        raise DatasetError(f"class split {which!r}: use one of {', '.join(CLASS_SPLITS)}.")
    half = math.ceil(int(num_classes) / 2)
    return {"all": list(range(num_classes)), "base": list(range(half)),
            "novel": list(range(half, num_classes))}[which]


def dataset_labels(dataset: Any) -> list[int]:
    """The label of every item of a classification reader, read without loading any image: from its
    ``samples`` records ``(path, label, ...)`` (the built-in readers), else its ``targets`` list."""
    samples = getattr(dataset, "samples", None)
    if samples is not None and all(isinstance(r, (tuple, list)) and len(r) > 1 for r in samples):
        return [int(r[1]) for r in samples]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return [int(t) for t in targets]
    raise DatasetError(f"{dataset!r} lists neither `samples` of (path, label, ...) nor `targets`; the "
                       "few-shot sampler needs each item's label without reading the images.")


class FewShotDataset(Dataset):
    """Items ``indices`` of ``dataset``, keeping only the classes ``keep`` (old labels, in the order that
    becomes the new labels 0..len(keep)-1; ``None`` = all classes, labels unchanged).

    The view owns the transform (the wrapped reader's is taken over, so a task sets ``transform`` here as
    on any reader). ``samples`` are the kept records with their new labels, so the feature cache, which
    fingerprints a dataset by its samples, gives a subset its own entry.
    """

    def __init__(self, dataset: Any, indices: Sequence[int], keep: Sequence[int] | None = None) -> None:
        self.dataset = dataset
        names = list(getattr(dataset, "class_names", []))
        self.keep = list(range(len(names))) if keep is None else [int(k) for k in keep]
        self._new_label = {old: new for new, old in enumerate(self.keep)}
        labels = dataset_labels(dataset)
        self.indices = [int(i) for i in indices if labels[int(i)] in self._new_label]
        self.class_names = [names[k] for k in self.keep]
        self.transform: Callable | None = getattr(dataset, "transform", None)
        dataset.transform = None
        records = getattr(dataset, "samples", None) or [(str(i), labels[i]) for i in range(len(labels))]
        self.samples = [(records[i][0], self._new_label[labels[i]], *records[i][2:]) for i in self.indices]
        self.root, self.split = getattr(dataset, "root", ""), getattr(dataset, "split", None)
        self.limit, self.skip_bad = getattr(dataset, "limit", None), getattr(dataset, "skip_bad", False)

    @property
    def num_skipped(self) -> int:
        return int(getattr(self.dataset, "num_skipped", 0))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        item = self.dataset[self.indices[index]]
        if item is None:  # a bad sample the reader skipped (data.skip_bad)
            return None
        item = {**item, "label": self._new_label[int(item["label"])]}
        return self.transform(item) if self.transform is not None else item

    def __repr__(self) -> str:
        return f"FewShotDataset({self.dataset!r}, n={len(self)}, classes={len(self.class_names)})"


def fewshot_splits(fewshot: FewShotConfig, run_seed: int, train: Any, val: Any) -> tuple[Any, Any]:
    """``data.fewshot`` on a task's splits: ``shots`` (seed ``fewshot.seed``, else ``run_seed``) and
    ``classes`` on ``train``, ``classes`` only on ``val`` (either may be ``None``). With ``shots: null``
    and ``classes: all`` both come back unchanged."""
    if fewshot.shots is None and fewshot.classes == "all":
        return train, val
    seed = run_seed if fewshot.seed is None else fewshot.seed

    def view(dataset: Any, shots: int | None) -> Any:
        names = list(getattr(dataset, "class_names", []))
        keep = split_classes(len(names), fewshot.classes)
        if fewshot.classes != "all" and not keep:
            raise DatasetError(f"data.fewshot.classes={fewshot.classes}: split '{dataset.split}' has "
                               f"{len(names)} class(es), none of them {fewshot.classes}.")
        labels = dataset_labels(dataset)
        indices = (sample_shots(labels, shots, seed, class_names=names, classes=keep) if shots is not None
                   else range(len(labels)))
        return FewShotDataset(dataset, indices, keep)

    return (view(train, fewshot.shots) if train is not None else None,
            view(val, None) if val is not None else None)
