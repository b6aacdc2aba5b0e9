"""The demo's world checks: every format the generator writes reads back through its reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import data as _readers_registered  # noqa: F401  (fills DATASETS)
from ..registry import DATASETS
from ..vis import draw_boxes, overlay_labels, panoptic_colours, save_grid

__all__ = ["preview_world", "reader_counts"]


def reader_counts(world: Path) -> list[tuple[str, int]]:
    """Val images each registered reader finds in the world: every written format reads back."""
    return [(name, len(DATASETS.build(name, **args))) for name, args in _readers(world)]


def preview_world(world: Path, path: Path, count: int = 4) -> Path:
    """One row per validation image: picture, ADE labels, panoptic map, instance boxes."""
    ade = DATASETS.build("ade20k", root=str(world / "ade"), split="val", limit=count)
    pan = DATASETS.build("coco_panoptic", **_coco(world, "panoptic"), limit=count)
    ins = DATASETS.build("coco_instances", **_coco(world, "instances"), limit=count)
    tiles, titles = [], []
    for i in range(min(count, len(ade))):
        image = (ade[i]["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        segments = pan[i]
        ids = np.zeros(image.shape[:2], np.int64)
        for k, mask in enumerate(segments["masks"]):
            ids[mask.numpy()] = k + 1
        boxes = ins[i]
        names = [ins.class_names[int(c)] for c in boxes["labels"]]
        tiles += [image, overlay_labels(image, ade[i]["label_map"].numpy()), panoptic_colours(ids),
                  draw_boxes(image, boxes["boxes"].tolist(), names)]
        titles += ["image", "semantic", "panoptic", "instances"]
    return save_grid(tiles, path, columns=4, titles=titles, scale=2)


def _coco(world: Path, kind: str) -> dict:
    coco = Path(world).resolve() / "coco"  # absolute: the reader joins relative file options to its root
    return {"root": str(coco), "split": "val", "image_dir": str(coco / "val"),
            "annotations_file": str(coco / "annotations" / f"{kind}_val.json"),
            **({"panoptic_dir": str(coco / "annotations" / "panoptic_val")} if kind == "panoptic" else {})}


def _readers(world: Path) -> list[tuple[str, dict]]:
    return [
        ("imagefolder", {"root": str(world / "imagefolder"), "split": "val"}),
        ("coco_captions", {**_coco(world, "captions")}),
        ("coco_instances", _coco(world, "instances")),
        ("coco_panoptic", _coco(world, "panoptic")),
        ("ade20k", {"root": str(world / "ade"), "split": "val"}),
        ("manifest", {"root": str(world / "manifest"), "split": "val"}),
    ]
