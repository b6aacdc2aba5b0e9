"""COCO panoptic reader (PNG + JSON).

Each pixel of a panoptic PNG encodes a segment id ``R + 256 * G + 256**2 * B``; id 0 is VOID. Items:
``{"image": (3, H, W) float in [0, 1], "masks": (K, H, W) bool, "labels": (K,) int64 contiguous in
[0, C), "isthing": (K,) bool, "iscrowd": (K,) bool, "segment_ids": (K,) int64, "image_id": int,
"file_name": str (the PNG name, as panopticapi matches predictions), "orig_size": (2,) int64}``.
Category ids map to labels by sorted id; ``cat_id_to_label``, ``label_to_cat_id`` and ``thing_classes``
(one bool per label) keep the mapping. Segments listed in the JSON but absent from the PNG are dropped.
"""

from __future__ import annotations

import numpy as np
import torch

from ..registry import DATASETS
from ._base import ReaderDataset
from .captions import read_json
from .images import BadSampleError, load_image, open_checked, resolve

__all__ = ["CocoPanopticDataset", "rgb_to_id", "id_to_rgb"]


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 colours -> ``(H, W)`` int64 segment ids (R + 256 G + 256^2 B)."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Inverse of `rgb_to_id`: ``(H, W)`` ids -> ``(H, W, 3)`` uint8 colours."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)


class CocoPanopticDataset(ReaderDataset):
    """COCO panoptic; defaults follow the 2017 layout.

    ``annotations_file``: root/annotations/panoptic_<split>2017.json; ``panoptic_dir``:
    root/annotations/panoptic_<split>2017/; ``image_dir``: root/<split>2017/ (``{split}`` in these three is
    replaced by the split name); ``categories_file`` (e.g. panoptic_coco_categories.json) overrides the
    JSON's own categories.
    """

    def __init__(self, root, split, transform=None, skip_bad=False, num_classes=None, limit=None,
                 annotations_file: str | None = None, panoptic_dir: str | None = None,
                 image_dir: str | None = None, categories_file: str | None = None):
        super().__init__(root, split, transform, skip_bad, limit)
        annotations_file, panoptic_dir, image_dir = (None if v is None else str(v).format(split=split)
                                                     for v in (annotations_file, panoptic_dir, image_dir))
        ann_path = resolve(self.root, annotations_file, f"annotations/panoptic_{split}2017.json")
        data = read_json(ann_path, "COCO panoptic file")
        self.annotations_file = ann_path
        self.panoptic_dir = resolve(self.root, panoptic_dir, f"annotations/panoptic_{split}2017")
        self.image_dir = resolve(self.root, image_dir, f"{split}2017")
        cats = (read_json(resolve(self.root, categories_file, ""), "panoptic categories file")
                if categories_file else data.get("categories", []))
        cats = sorted(cats, key=lambda c: c["id"])
        self.class_names = [c["name"] for c in cats]
        self.thing_classes = [bool(c.get("isthing", 1)) for c in cats]
        self.cat_id_to_label = {int(c["id"]): i for i, c in enumerate(cats)}
        self.label_to_cat_id = [int(c["id"]) for c in cats]
        images = {im["id"]: im for im in data.get("images", [])}
        anns = sorted(data.get("annotations", []), key=lambda a: a["image_id"])
        self.samples = [(a, images.get(a["image_id"], {})) for a in anns]
        self._finish(num_classes, f"COCO panoptic {ann_path}")

    def load(self, record: tuple[dict, dict]) -> dict:
        ann, info = record
        png = self.panoptic_dir / ann["file_name"]
        image_name = info.get("file_name", ann["file_name"].rsplit(".", 1)[0] + ".jpg")
        image = load_image(self.image_dir / image_name)
        pan = open_checked(png)
        if pan.mode != "RGB":
            raise BadSampleError(f"Panoptic PNG {png} has mode {pan.mode}; expected RGB-encoded ids.")
        ids = rgb_to_id(np.asarray(pan))  # (H, W)
        if ids.shape != tuple(image.shape[1:]):
            raise BadSampleError(f"Panoptic PNG {png} is {ids.shape[::-1]} but image {image_name} is "
                                 f"{tuple(image.shape[1:])[::-1]} (W x H); they must match.")
        segments = {int(s["id"]): s for s in ann.get("segments_info", [])}
        present = np.unique(ids)
        unknown = [int(i) for i in present if i != 0 and int(i) not in segments]
        if unknown:
            raise BadSampleError(f"Panoptic PNG {png} has segment ids {unknown[:5]} that its JSON record "
                                 "does not list; the PNG and JSON do not belong together.")
        masks, labels, isthing, crowd, seg_ids = [], [], [], [], []
        present_ids = {int(i) for i in present}
        for sid, seg in segments.items():  # JSON order; segments absent from the PNG are dropped
            if sid not in present_ids:
                continue
            cat = int(seg["category_id"])
            if cat not in self.cat_id_to_label:
                raise BadSampleError(f"Segment {sid} of {png} has unknown category_id {cat}.")
            label = self.cat_id_to_label[cat]
            masks.append(ids == sid)
            labels.append(label)
            isthing.append(self.thing_classes[label])
            crowd.append(bool(seg.get("iscrowd", 0)))
            seg_ids.append(sid)
        h, w = ids.shape
        stacked = np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool)  # (K, H, W)
        return {"image": image,
                "masks": torch.from_numpy(stacked),
                "labels": torch.tensor(labels, dtype=torch.int64),
                "isthing": torch.tensor(isthing, dtype=torch.bool),
                "iscrowd": torch.tensor(crowd, dtype=torch.bool),
                "segment_ids": torch.tensor(seg_ids, dtype=torch.int64),
                "image_id": ann["image_id"],
                "file_name": ann["file_name"],
                "orig_size": torch.tensor([h, w], dtype=torch.int64)}


@DATASETS.register("coco_panoptic")
def build_coco_panoptic(root, split, transform=None, skip_bad=False, num_classes=None, limit=None,
                        **options) -> CocoPanopticDataset:
    """COCO panoptic PNG + JSON (segment id = R + 256 G + 256^2 B, VOID 0) with contiguous labels."""
    return CocoPanopticDataset(root, split, transform, skip_bad, num_classes, limit, **options)
