"""Semantic segmentation readers: ADE20K layout and a generic image-folder / label-folder reader.

Items: ``{"image": (3, H, W) float in [0, 1], "label_map": (H, W) int64 with values in [0, C) or
255 (= ignore), "path": str}``. With ``reduce_zero_label`` the stored label 0 ("other") becomes 255
and every other label k becomes k - 1 (ADE20K-150 convention); 255 stays 255. A label value outside
[0, C) that is not 255 is a bad sample.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..registry import DATASETS
from ._base import ReaderDataset
from .classification import IMAGE_EXTENSIONS
from .images import (
    IGNORE_INDEX,
    BadSampleError,
    DatasetError,
    load_image,
    load_label_map,
    read_lines,
    resolve,
)

__all__ = ["SegFolderDataset", "reduce_zero_label_map", "ADE20K_SPLITS"]

ADE20K_SPLITS = {"train": "training", "val": "validation"}


def reduce_zero_label_map(label: torch.Tensor) -> torch.Tensor:
    """0 -> 255, k -> k - 1, 255 -> 255 (labels are shifted so class 0 'other' is ignored)."""
    out = label - 1
    out[label == 0] = IGNORE_INDEX
    out[label == IGNORE_INDEX] = IGNORE_INDEX
    return out


class SegFolderDataset(ReaderDataset):
    """Images in ``image_dir`` paired by file stem with label PNGs in ``label_dir``.

    ``image_dir`` / ``label_dir`` may contain ``{split}``; ``label_suffix`` is appended to the image's
    stem (COCO-Stuff: ``"_labelTrainIds.png"``); ``split_file`` (optional, may contain ``{split}``)
    lists the stems to use (Pascal Context: ImageSets/SegmentationContext/{split}.txt). Class names come
    from ``class_names`` (a list), ``class_names_file`` (default root/classes.txt), or, when neither
    exists, ``num_classes`` generic names.
    """

    def __init__(self, root, split, transform=None, skip_bad=False, num_classes=None, limit=None,
                 image_dir: str = "images/{split}", label_dir: str = "annotations/{split}",
                 label_suffix: str = ".png", split_file: str | None = None,
                 class_names: list[str] | None = None, class_names_file: str | None = None,
                 reduce_zero_label: bool = False):
        super().__init__(root, split, transform, skip_bad, limit)
        self.image_dir = resolve(self.root, image_dir.format(split=split), "")
        self.label_dir = resolve(self.root, label_dir.format(split=split), "")
        self.reduce_zero_label = bool(reduce_zero_label)
        if not self.image_dir.is_dir():
            raise DatasetError(f"Image folder not found: {self.image_dir}; check data.root, the split "
                               "and the image_dir option.")
        if split_file is not None:
            stems = read_lines(resolve(self.root, split_file.format(split=split), ""))
            by_stem = {p.stem: p for p in self.image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
            images = [by_stem.get(s, self.image_dir / f"{s}.jpg") for s in stems]
        else:
            images = sorted(p for p in self.image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        self.samples = [(p, self.label_dir / f"{p.stem}{label_suffix}") for p in images]
        names_path = resolve(self.root, class_names_file, "classes.txt")
        if class_names is not None:
            self.class_names = [str(n) for n in class_names]
        elif class_names_file is not None or names_path.is_file():
            self.class_names = read_lines(names_path)
        elif num_classes is not None:
            self.class_names = [f"class_{i}" for i in range(int(num_classes))]
        else:
            raise DatasetError(f"No class names for {self.root}: write {names_path} (one name per line, "
                               "in label order after reduce_zero_label) or pass class_names_file or "
                               "num_classes.")
        self._finish(num_classes, f"segmentation folder {self.root}")

    def load(self, record: tuple[Path, Path]) -> dict:
        image_path, label_path = record
        image = load_image(image_path)
        label = load_label_map(label_path)
        if tuple(label.shape) != tuple(image.shape[1:]):
            raise BadSampleError(f"Label map {label_path} is {tuple(label.shape)} (H, W) but image "
                                 f"{image_path} is {tuple(image.shape[1:])}; they must match.")
        if self.reduce_zero_label:
            label = reduce_zero_label_map(label)
        num = len(self.class_names)
        bad = (label >= num) & (label != IGNORE_INDEX) | (label < 0)
        if bool(bad.any()):
            value = int(label[bad][0])
            raise BadSampleError(f"Label map {label_path} holds value {value}, outside [0, {num}) and not "
                                 f"{IGNORE_INDEX} (ignore); reduce_zero_label={self.reduce_zero_label}. "
                                 "Check the class list and the reduce_zero_label option, or set "
                                 "data.skip_bad=true.")
        return {"image": image, "label_map": label, "path": str(image_path)}


@DATASETS.register("ade20k")
def build_ade20k(root, split, transform=None, skip_bad=False, num_classes=None, limit=None,
                 reduce_zero_label: bool = True, **options) -> SegFolderDataset:
    """ADE20K: root/images/{training,validation}, root/annotations/..., classes from root/classes.txt.

    ``split`` train/val is aliased to training/validation; ``reduce_zero_label`` defaults to True (the
    ADE20K-150 convention: 0 'other' -> 255 ignore, k -> k - 1).
    """
    folder = ADE20K_SPLITS.get(split, split)
    return SegFolderDataset(root, folder, transform, skip_bad, num_classes, limit,
                            reduce_zero_label=reduce_zero_label, **options)


@DATASETS.register("seg_folder")
def build_seg_folder(root, split, transform=None, skip_bad=False, num_classes=None, limit=None,
                     **options) -> SegFolderDataset:
    """Generic image-folder + label-PNG-folder semantic segmentation (Pascal Context, COCO-Stuff style)."""
    return SegFolderDataset(root, split, transform, skip_bad, num_classes, limit, **options)
