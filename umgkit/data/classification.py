"""Classification readers: ImageNet-style folders and ``path,label`` CSV files.

Items: ``{"image": (3, H, W) float in [0, 1], "label": int in [0, C), "path": str}``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

from ..registry import DATASETS
from ._base import ReaderDataset
from .images import BadSampleError, DatasetError, load_image, read_lines, resolve

__all__ = ["ImageFolderDataset", "CsvDataset", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


class _Classification(ReaderDataset):
    def load(self, record: tuple[Path, int, str]) -> dict:
        path, label, raw = record  # raw: the label as written (index or class name)
        if not 0 <= label < len(self.class_names):
            raise BadSampleError(f"Label '{raw}' of {path} is not a class index in [0, "
                                 f"{len(self.class_names)}) nor a known class name. Fix the label or "
                                 "the class list, or set data.skip_bad=true to skip such samples.")
        return {"image": load_image(path), "label": label, "path": str(path)}


class ImageFolderDataset(_Classification):
    """``root/<split>/<class>/<image>``; labels follow the sorted class-folder names.

    ``class_names_file`` (one display name per line, in sorted-folder order, e.g. ImageNet names for
    ``n01440764``...) replaces the folder names in ``class_names``; ``folder_names`` keeps the folders.
    """

    def __init__(self, root, split, transform=None, skip_bad=False, num_classes=None, limit=None,
                 class_names_file: str | None = None, extensions: tuple[str, ...] = IMAGE_EXTENSIONS):
        super().__init__(root, split, transform, skip_bad, limit)
        split_dir = self.root / split
        if not split_dir.is_dir():
            raise DatasetError(f"ImageFolder split folder not found: {split_dir}. Expected "
                               f"{self.root}/<split>/<class>/<image files>; check data.root and the split "
                               "name (data.train_split / data.val_split).")
        self.folder_names = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
        if not self.folder_names:
            raise DatasetError(f"No class folders in {split_dir}; expected one sub-folder per class.")
        self.class_names = list(self.folder_names)
        if class_names_file:
            names = read_lines(resolve(self.root, class_names_file, ""))
            if len(names) != len(self.folder_names):
                raise DatasetError(f"{class_names_file} lists {len(names)} names but {split_dir} has "
                                   f"{len(self.folder_names)} class folders; give one name per folder, "
                                   "in sorted folder order.")
            self.class_names = names
        exts = tuple(e.lower() for e in extensions)
        self.samples = [(Path(e.path), label, folder) for label, folder in enumerate(self.folder_names)
                        for e in sorted(os.scandir(split_dir / folder), key=lambda e: e.name)
                        if e.is_file() and os.path.splitext(e.name)[1].lower() in exts]
        self._finish(num_classes, f"ImageFolder {split_dir}")


class CsvDataset(_Classification):
    """``root/<split>.csv`` with rows ``path,label`` (a header row is allowed; paths relative to root).

    A label is a class index or a class name. Class names come from ``class_names_file``; else, with
    name labels, the sorted set of names; else (integer labels) ``num_classes`` names ``"0".."C-1"``,
    or ``max label + 1`` when ``num_classes`` is not given.
    """

    def __init__(self, root, split, transform=None, skip_bad=False, num_classes=None, limit=None,
                 class_names_file: str | None = None, csv_file: str | None = None):
        super().__init__(root, split, transform, skip_bad, limit)
        table = resolve(self.root, csv_file, f"{split}.csv")
        if not table.is_file():
            raise DatasetError(f"CSV file not found: {table}. Expected rows 'path,label' in "
                               f"{self.root}/<split>.csv (or pass csv_file).")
        with table.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
        if rows and rows[0][0].strip().lower() in ("path", "file", "filename", "image"):
            rows = rows[1:]
        bad = [i for i, r in enumerate(rows) if len(r) < 2]
        if bad:
            raise DatasetError(f"{table}: row {bad[0] + 1} has fewer than 2 columns; expected 'path,label'.")
        raw = [(r[0].strip(), r[1].strip()) for r in rows]
        numeric = all(_is_int(lab) for _, lab in raw)
        if class_names_file:
            self.class_names = read_lines(resolve(self.root, class_names_file, ""))
        elif numeric:
            count = num_classes if num_classes is not None else max((int(b) for _, b in raw), default=-1) + 1
            self.class_names = [str(i) for i in range(int(count))]
        else:
            self.class_names = sorted({lab for _, lab in raw if not _is_int(lab)})
        index = {n: i for i, n in enumerate(self.class_names)}
        # unknown names map to -1 so the error is raised (or the row skipped) per sample
        self.samples = [(resolve(self.root, p, ""), int(lab) if _is_int(lab) else index.get(lab, -1), lab)
                        for p, lab in raw]
        self._finish(num_classes, f"CSV {table}")


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


@DATASETS.register("imagefolder")
def build_imagefolder(root, split, transform: Callable | None = None, skip_bad=False, num_classes=None,
                      limit=None, **options) -> ImageFolderDataset:
    """ImageNet-style root/<split>/<class>/*.jpg classification folders."""
    return ImageFolderDataset(root, split, transform, skip_bad, num_classes, limit, **options)


@DATASETS.register("csv")
def build_csv(root, split, transform: Callable | None = None, skip_bad=False, num_classes=None,
              limit=None, **options) -> CsvDataset:
    """root/<split>.csv with 'path,label' rows (label index or class name)."""
    return CsvDataset(root, split, transform, skip_bad, num_classes, limit, **options)
