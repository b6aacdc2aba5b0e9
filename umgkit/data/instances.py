"""COCO instances reader (detection + instance masks).

Items: ``{"image": (3, H, W) float in [0, 1], "boxes": (K, 4) float32 absolute XYXY pixels,
"labels": (K,) int64 contiguous in [0, C), "masks": (K, H, W) uint8, "iscrowd": (K,) int64,
"image_id": int, "orig_size": (2,) int64 (H, W)}``. COCO category ids (non-contiguous, e.g. 1..90)
map to labels by sorted id; ``cat_id_to_label`` / ``label_to_cat_id`` keep the mapping for COCOeval.
Segmentations may be polygons, uncompressed RLE or compressed RLE (decoded with pycocotools.mask).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from pycocotools import mask as mask_utils

from ..registry import DATASETS
from ._base import ReaderDataset
from .captions import read_json
from .images import BadSampleError, load_image, resolve

__all__ = ["CocoInstancesDataset", "decode_segmentation"]


def decode_segmentation(segm, height: int, width: int) -> np.ndarray:
    """COCO polygon list / RLE dict -> ``(H, W)`` uint8 mask."""
    if isinstance(segm, list):  # polygons: list of [x1, y1, x2, y2, ...]
        polys = [p for p in segm if len(p) >= 6]
        if not polys:
            return np.zeros((height, width), dtype=np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(segm.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segm, height, width)
    else:  # compressed RLE (counts as str or bytes)
        counts = segm["counts"]
        rle = {"size": segm["size"], "counts": counts.encode() if isinstance(counts, str) else counts}
    with warnings.catch_warnings():  # pycocotools' own numpy-2 copy= DeprecationWarning, not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(np.uint8)


class CocoInstancesDataset(ReaderDataset):
    """COCO instances JSON + image folder; see the module docstring for the item layout.

    Defaults follow the COCO 2017 layout: root/annotations/instances_<split>2017.json and
    root/<split>2017/. Annotations with a non-positive box width or height are dropped (invalid in
    COCO); ``drop_empty`` removes images left without annotations; ``with_masks=False`` skips decoding.
    """

    def __init__(self, root, split, transform=None, skip_bad=False, num_classes=None, limit=None,
                 annotations_file: str | None = None, image_dir: str | None = None,
                 with_masks: bool = True, drop_empty: bool = False):
        super().__init__(root, split, transform, skip_bad, limit)
        ann_path = resolve(self.root, annotations_file, f"annotations/instances_{split}2017.json")
        data = read_json(ann_path, "COCO instances file")
        self.annotations_file = ann_path  # for COCOeval
        self.image_dir = resolve(self.root, image_dir, f"{split}2017")
        self.with_masks = with_masks
        cats = sorted(data.get("categories", []), key=lambda c: c["id"])
        self.class_names = [c["name"] for c in cats]
        self.cat_id_to_label = {int(c["id"]): i for i, c in enumerate(cats)}
        self.label_to_cat_id = [int(c["id"]) for c in cats]
        per_image: dict[int, list[dict]] = {}
        for a in data.get("annotations", []):
            per_image.setdefault(a["image_id"], []).append(a)
        images = sorted(data.get("images", []), key=lambda im: im["id"])
        self.samples = [(im, per_image.get(im["id"], [])) for im in images
                        if not drop_empty or per_image.get(im["id"])]
        self._finish(num_classes, f"COCO instances {ann_path}")

    def load(self, record: tuple[dict, list[dict]]) -> dict:
        info, anns = record
        path = self.image_dir / info["file_name"]
        image = load_image(path)
        h, w = int(info["height"]), int(info["width"])
        if tuple(image.shape[1:]) != (h, w):
            raise BadSampleError(f"{path} is {image.shape[2]}x{image.shape[1]} but its COCO record says "
                                 f"{w}x{h}; the image or the annotation file is wrong.")
        boxes, labels, crowd, masks = [], [], [], []
        for a in anns:
            x, y, bw, bh = (float(v) for v in a["bbox"])
            if bw <= 0 or bh <= 0:
                continue
            if int(a["category_id"]) not in self.cat_id_to_label:
                known = self.label_to_cat_id
                shown = f"{known[:10]}".rstrip("]") + (", ...]" if len(known) > 10 else "]")
                raise BadSampleError(f"Annotation {a.get('id')} of {path} has category_id "
                                     f"{a['category_id']}, not among the file's categories {shown}; fix "
                                     "the annotation file or set data.skip_bad=true.")
            boxes.append([x, y, min(x + bw, w), min(y + bh, h)])
            labels.append(self.cat_id_to_label[int(a["category_id"])])
            crowd.append(int(a.get("iscrowd", 0)))
            if self.with_masks:
                segm = a.get("segmentation")
                if segm:
                    masks.append(decode_segmentation(segm, h, w))
                else:  # no segmentation: the box is the best mask available
                    m = np.zeros((h, w), dtype=np.uint8)
                    m[int(y):int(np.ceil(y + bh)), int(x):int(np.ceil(x + bw))] = 1
                    masks.append(m)
        item = {"image": image,
                "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor(labels, dtype=torch.int64),
                "iscrowd": torch.tensor(crowd, dtype=torch.int64),
                "image_id": int(info["id"]),
                "orig_size": torch.tensor([h, w], dtype=torch.int64)}
        if self.with_masks:
            item["masks"] = (torch.from_numpy(np.stack(masks)) if masks
                             else torch.zeros((0, h, w), dtype=torch.uint8))
        return item


@DATASETS.register("coco_instances")
def build_coco_instances(root, split, transform=None, skip_bad=False, num_classes=None, limit=None,
                         **options) -> CocoInstancesDataset:
    """COCO instances JSON (boxes, polygon/RLE masks, crowd flags) with contiguous labels."""
    return CocoInstancesDataset(root, split, transform, skip_bad, num_classes, limit, **options)
