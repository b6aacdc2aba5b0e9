"""``coop_split`` reader: the split files of the CoOp few-shot protocol (``split_zhou_<Name>.json``).

A split file is JSON ``{"train": [[image_path, label, class_name], ...], "val": [...], "test": [...]}``
with image paths relative to the image folder. ``data.root`` is that image folder and
``data.options.split_file`` the JSON (relative to ``data.root`` or absolute), e.g. for Oxford Pets
``root: data/oxford_pets/images`` and ``split_file: ../split_zhou_OxfordPets.json``.

``class_names`` come from the file, in label order, unless ``data.class_names`` gives a file of display
names (one per line, in label order). The file is checked as a whole, so every split of one
file agrees: labels are ``0..C-1`` with none missing, each label has one class name and each name one
label, in every split; an error names the file, the split and the entry.

Items: ``{"image": (3, H, W) float in [0, 1], "label": int in [0, C), "path": str}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..registry import DATASETS
from .classification import _Classification
from .images import DatasetError, read_lines, resolve

__all__ = ["CoopSplitDataset", "build_coop_split", "read_split_file"]


def read_split_file(path: Path) -> tuple[dict[str, list[tuple[str, int, str]]], list[str]]:
    """``({split: [(image_path, label, class_name), ...]}, class_names)`` of a CoOp split file, checked as
    the module docstring says (`DatasetError` naming the file, split and entry otherwise)."""
    if not path.is_file():
        raise DatasetError(f"CoOp split file not found: {path}. Set data.options.split_file to the "
                           "split_zhou_<Name>.json (relative to data.root, the image folder, or absolute).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path} is not a JSON file ({err}); a CoOp split file is "
                           '{"train": [[image_path, label, class_name], ...], "val": [...], "test": [...]}.'
                           ) from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise DatasetError(f"{path}: expected a JSON object mapping split names to lists of "
                           "[image_path, label, class_name] entries.")
    splits: dict[str, list[tuple[str, int, str]]] = {}
    name_of: dict[int, tuple[str, str, int]] = {}  # label -> (name, split, entry) where first seen
    label_of: dict[str, tuple[int, str, int]] = {}
    for split, entries in data.items():
        rows = []
        for i, entry in enumerate(entries):
            where = f"{path}: split '{split}', entry {i}"
            if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                    and isinstance(entry[1], int) and not isinstance(entry[1], bool)
                    and isinstance(entry[2], str)):
                raise DatasetError(f"{where} is {entry!r}; expected [image_path, integer label, class_name].")
            image, label, name = entry
            if label < 0:
                raise DatasetError(f"{where} has label {label}; labels are 0..C-1.")
            seen = name_of.setdefault(label, (name, split, i))
            if seen[0] != name:
                raise DatasetError(f"{where} names label {label} '{name}', but split '{seen[1]}', entry "
                                   f"{seen[2]} names it '{seen[0]}'; one class name per label.")
            other = label_of.setdefault(name, (label, split, i))
            if other[0] != label:
                raise DatasetError(f"{where} gives class '{name}' label {label}, but split '{other[1]}', "
                                   f"entry {other[2]} gives it label {other[0]}; one label per class name.")
            rows.append((image, label, name))
        splits[split] = rows
    if not name_of:
        raise DatasetError(f"{path} lists no images in any split.")
    top = max(name_of)
    if top != len(name_of) - 1:
        absent = [c for c in range(top + 1) if c not in name_of]
        raise DatasetError(f"{path}: labels must be 0..C-1 with none missing; labels go up to {top} but "
                           f"{', '.join(map(str, absent[:10]))} never occur.")
    return splits, [name_of[c][0] for c in range(len(name_of))]


class CoopSplitDataset(_Classification):
    """One split of a CoOp split file over the image folder ``root`` (see the module docstring)."""

    def __init__(self, root, split, transform=None, skip_bad=False, num_classes=None, limit=None,
                 split_file: str | None = None, class_names_file: str | None = None) -> None:
        super().__init__(root, split, transform, skip_bad, limit)
        if not split_file:
            raise DatasetError("data.format=coop_split needs data.options.split_file: the CoOp protocol's "
                               "split_zhou_<Name>.json (relative to data.root or absolute).")
        self.split_file = resolve(self.root, split_file, "")
        splits, self.class_names = read_split_file(self.split_file)
        if split not in splits:
            raise DatasetError(f"{self.split_file} has no split '{split}' (it has: {', '.join(splits)}); set "
                               "data.train_split / data.val_split to one of those.")
        if class_names_file:  # display names for the prompts, e.g. CoOp's EuroSAT "Annual Crop Land"
            names = read_lines(resolve(self.root, class_names_file, ""))
            if len(names) != len(self.class_names):
                raise DatasetError(f"{class_names_file} lists {len(names)} names but {self.split_file} has "
                                   f"{len(self.class_names)} classes; give one name per label, in order.")
            self.class_names = names
        self.samples: list[Any] = [(resolve(self.root, image, ""), label, name)
                                   for image, label, name in splits[split]]
        self._finish(num_classes, f"CoOp split '{split}' of {self.split_file}")


@DATASETS.register("coop_split")
def build_coop_split(root, split, transform: Callable | None = None, skip_bad=False, num_classes=None,
                     limit=None, **options) -> CoopSplitDataset:
    """CoOp few-shot split file (split_zhou_*.json, option split_file) over the image folder root."""
    return CoopSplitDataset(root, split, transform, skip_bad, num_classes, limit, **options)
