"""Retrieval readers: COCO captions JSON and Karpathy split JSON (COCO / Flickr30k).

Items: ``{"image": (3, H, W) float in [0, 1], "captions": list[str], "image_id": int}``, one per image
(COCO 5k / Flickr 1k protocol: every caption of an image is a positive for it).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..registry import DATASETS
from ._base import ReaderDataset
from .images import DatasetError, load_image, resolve

__all__ = ["CaptionDataset", "build_coco_captions", "build_karpathy"]


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}. Check data.root or pass annotations_file.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DatasetError(f"{what} {path} is not valid JSON ({err}); re-download or repair it.") from err


class CaptionDataset(ReaderDataset):
    """Images with their captions; records are ``(path, captions, image_id)``.

    ``class_names`` is empty: retrieval has no classes.
    """

    def __init__(self, root, split, records, transform=None, skip_bad=False, num_classes=None, limit=None):
        super().__init__(root, split, transform, skip_bad, limit)
        self.samples = records
        self._finish(num_classes, f"caption dataset {self.root}")

    def load(self, record: tuple[Path, list[str], int]) -> dict:
        path, captions, image_id = record
        return {"image": load_image(path), "captions": list(captions), "image_id": image_id}


@DATASETS.register("coco_captions")
def build_coco_captions(root, split, transform=None, skip_bad=False, num_classes=None, limit=None,
                        annotations_file: str | None = None, image_dir: str | None = None) -> CaptionDataset:
    """COCO captions: root/annotations/captions_<split>2017.json, images in root/<split>2017/."""
    root = Path(root).expanduser()
    ann = read_json(resolve(root, annotations_file, f"annotations/captions_{split}2017.json"),
                    "COCO captions file")
    images = resolve(root, image_dir, f"{split}2017")
    caps: dict[int, list[str]] = {}
    for a in ann.get("annotations", []):
        caps.setdefault(a["image_id"], []).append(a["caption"].strip())
    records = [(images / im["file_name"], caps.get(im["id"], []), int(im["id"]))
               for im in sorted(ann.get("images", []), key=lambda im: im["id"])]
    return CaptionDataset(root, split, records, transform, skip_bad, num_classes, limit)


@DATASETS.register("karpathy")
def build_karpathy(root, split, transform=None, skip_bad=False, num_classes=None, limit=None,
                   annotations_file: str | None = None, image_dir: str | None = None,
                   include_restval: bool = True) -> CaptionDataset:
    """Karpathy split JSON (dataset_coco.json / dataset_flickr30k.json) for COCO or Flickr30k.

    ``split`` is train / val / test; train includes ``restval`` unless ``include_restval=False``.
    Images are read from ``image_dir`` (default: root/flickr30k-images or root/images when present,
    else root) joined with each record's ``filepath`` (COCO: train2014/val2014) and ``filename``.
    """
    root = Path(root).expanduser()
    if annotations_file is None:
        found = sorted(root.glob("dataset_*.json"))
        if not found:
            raise DatasetError(f"No Karpathy split file (dataset_*.json) in {root}; pass annotations_file.")
        annotations_file = str(found[0])
    data = read_json(resolve(root, annotations_file, ""), "Karpathy split file")
    if image_dir is None:
        image_dir = next((d for d in ("flickr30k-images", "images") if (root / d).is_dir()), ".")
    images = resolve(root, image_dir, "")
    wanted = {split} | ({"restval"} if split == "train" and include_restval else set())
    entries = [im for im in data.get("images", []) if im.get("split") in wanted]
    if not entries:
        found_splits = sorted({im.get("split") for im in data.get("images", [])})
        raise DatasetError(f"Karpathy file {annotations_file} has no images in split '{split}'; "
                           f"its splits are {found_splits}.")
    records = [(images / im.get("filepath", "") / im["filename"],
                [s["raw"].strip() for s in im.get("sentences", [])],
                int(im.get("cocoid", im.get("imgid", i))))
               for i, im in enumerate(entries)]
    return CaptionDataset(root, split, records, transform, skip_bad, num_classes, limit)
