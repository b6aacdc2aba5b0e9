"""JSONL pretraining manifest reader.

One JSON object per line::

    {"image": "imgs/0001.jpg", "caption": "...", "captions": ["...", ...] (optional), "tags": ["cat", ...],
     "regions": [{"box": [x1, y1, x2, y2], "caption": "...", "captions": [...] (optional), "tags": [...],
                  "mask": <COCO RLE, optional>}]}

Image paths are relative to the manifest file's folder; boxes are absolute XYXY pixels. ``captions``
lists alternative captions of the image (as COCO has five) or of a region (descriptions of varying
detail), of which pretraining draws one per step; without it the one ``caption`` is used. Items:
``{"image": (3, H, W) float in [0, 1], "caption": str, "captions": list[str], "tags": list[str],
"boxes": (R, 4) float32, "region_captions": list[str], "region_caption_sets": list[list[str]],
"region_tags": list[list[str]], "masks": (R, H, W) uint8, "has_mask": (R,) bool, "path": str}``; a
region without a mask gets its box filled as mask and ``has_mask`` False. ``class_names`` is the sorted
tag vocabulary. A line that is not valid JSON or lacks ``image`` is a bad sample (raised, or skipped and
counted with ``skip_bad``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..registry import DATASETS
from ._base import ReaderDataset
from .images import BadSampleError, DatasetError, load_image
from .instances import decode_segmentation

__all__ = ["ManifestDataset", "item_from_record", "manifest_file", "parse_record"]


class ManifestDataset(ReaderDataset):
    """``root`` is the .jsonl file or a folder holding ``<split>.jsonl``."""

    def __init__(self, root, split, transform=None, skip_bad=False, num_classes=None, limit=None):
        super().__init__(root, split, transform, skip_bad, limit)
        self.manifest = path = manifest_file(self.root, split)
        tags: set[str] = set()
        self.samples = []
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    if not isinstance(rec, dict) or "image" not in rec:
                        raise ValueError("no 'image' key")
                except ValueError as err:  # JSONDecodeError is a ValueError
                    self.samples.append(f"{path}:{lineno}: {err}")  # a bad record, reported on load
                    continue
                tags.update(rec.get("tags", []))
                for r in rec.get("regions", []):
                    tags.update(r.get("tags", []))
                self.samples.append(rec)
        self.class_names = sorted(tags)
        self._finish(num_classes, f"manifest {path}")

    def load(self, record: dict | str) -> dict:
        if isinstance(record, str):
            raise BadSampleError(f"Bad manifest line {record}. Expected a JSON object with an 'image' key; "
                                 "fix the line or set data.skip_bad=true.")
        path = self.manifest.parent / record["image"]
        image = load_image(path)
        return item_from_record(record, image, str(path))


def parse_record(text: str | bytes, where: str, fix: str = "Fix it or set data.skip_bad=true.") -> dict:
    """One manifest record (a JSON object with an ``image`` key); raises `BadSampleError` naming ``where``
    and ending with ``fix`` (the shard writer has no data.skip_bad and says so)."""
    try:
        rec = json.loads(text)
    except ValueError as err:
        raise BadSampleError(f"Bad manifest record {where}: {err}. {fix}") from err
    if not isinstance(rec, dict) or "image" not in rec:
        raise BadSampleError(f"Bad manifest record {where}: expected a JSON object with an 'image' key. "
                             f"{fix}")
    return rec


def manifest_file(root: Path, split: str) -> Path:
    """``root`` itself when it is a ``.jsonl`` file, else ``root/<split>.jsonl``; raises when missing."""
    path = root if root.suffix == ".jsonl" else root / f"{split}.jsonl"
    if not path.is_file():
        raise DatasetError(f"Manifest not found: {path}. Pass the .jsonl file or a folder holding "
                           f"<split>.jsonl as data.root.")
    return path


def item_from_record(record: dict, image: torch.Tensor, path: str) -> dict[str, Any]:
    """The reader item for ``record`` whose image ``(3, H, W)`` in [0, 1] is already decoded."""
    h, w = image.shape[1:]
    regions = record.get("regions", [])
    boxes = torch.tensor([r.get("box", [0, 0, 0, 0]) for r in regions], dtype=torch.float32).reshape(-1, 4)
    if boxes.numel() and bool(((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any()):
        raise BadSampleError(f"{path}: a region box is not [x1, y1, x2, y2] with x2 >= x1, y2 >= y1.")
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    masks = np.zeros((len(regions), h, w), dtype=np.uint8)
    has_mask = []
    for i, r in enumerate(regions):
        if r.get("mask"):
            m = decode_segmentation(r["mask"], h, w)
            if m.shape != (h, w):
                raise BadSampleError(f"{path}: region {i} mask is {m.shape}, image is {(h, w)}.")
            masks[i] = m
        else:
            x1, y1, x2, y2 = boxes[i].tolist()
            masks[i, int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))] = 1
        has_mask.append(bool(r.get("mask")))
    caption, region_caps = str(record.get("caption", "")), [str(r.get("caption", "")) for r in regions]
    return {"image": image, "caption": caption, "captions": _alternatives(record, caption, path),
            "tags": list(record.get("tags", [])), "boxes": boxes, "region_captions": region_caps,
            "region_caption_sets": [_alternatives(r, c, f"{path} region {i}")
                                    for i, (r, c) in enumerate(zip(regions, region_caps, strict=True))],
            "region_tags": [list(r.get("tags", [])) for r in regions], "masks": torch.from_numpy(masks),
            "has_mask": torch.tensor(has_mask, dtype=torch.bool), "path": str(path)}


def _alternatives(record: dict, caption: str, where: str) -> list[str]:
    """The record's ``captions`` list, or just its ``caption``."""
    captions = record.get("captions") or [caption]
    if not isinstance(captions, list):
        raise BadSampleError(f"{where}: 'captions' is {type(captions).__name__}; give a list of strings "
                             "(alternative captions) or leave it out.")
    return [str(c) for c in captions]


@DATASETS.register("manifest")
def build_manifest(root, split, transform=None, skip_bad=False, num_classes=None, limit=None,
                   **options) -> ManifestDataset:
    """JSONL pretraining manifest (image, caption, tags, regions with box/caption/tags/optional RLE)."""
    return ManifestDataset(root, split, transform, skip_bad, num_classes, limit, **options)
