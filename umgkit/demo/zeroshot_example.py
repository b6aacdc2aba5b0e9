"""A picture of zero-shot region classification: ground-truth boxes named by the pretrained backbone alone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..registry import DATASETS
from ..vis import draw_boxes, save_grid
from .world import _coco

__all__ = ["zeroshot_region_example"]


@torch.no_grad()
def zeroshot_region_example(backbone_dir: Path, world: Path, path: Path, templates: Sequence[str],
                            count: int = 4) -> tuple[Path, int, int]:
    """Draw ``count`` held-out images with each box labelled ``predicted`` (``predicted/true`` when wrong).

    Returns ``(png, correct, boxes)``. Uses only ``encode_text`` and ``embed_regions``: no task training.
    """
    from ..backbones import create_backbone
    from ..data.transforms import build_transforms
    from ..pretrain import class_embeddings

    backbone = create_backbone(f"umg:{backbone_dir}").eval()
    size = backbone.image_size[0]
    transform = build_transforms("detection", train=False, image_size=size, mean=(0.0,) * 3, std=(1.0,) * 3)
    dataset = DATASETS.build("coco_instances", **_coco(world, "instances"), limit=count, transform=transform)
    classes = class_embeddings(backbone, dataset.class_names, templates)  # (C, D)
    mean = torch.tensor(backbone.image_mean).view(3, 1, 1)
    std = torch.tensor(backbone.image_std).view(3, 1, 1)
    tiles, titles, correct, total = [], [], 0, 0
    for i in range(min(count, len(dataset))):
        item = dataset[i]
        boxes, labels = item["boxes"], item["labels"]
        image = item["image"]
        predicted = (backbone.embed_regions(((image - mean) / std)[None], [boxes]) @ classes.t()).argmax(1)
        names = [dataset.class_names[int(p)] if p == t else
                 f"{dataset.class_names[int(p)]}/{dataset.class_names[int(t)]}"
                 for p, t in zip(predicted, labels, strict=True)]
        hits = int((predicted == labels).sum())
        correct, total = correct + hits, total + len(labels)
        picture = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        tiles.append(draw_boxes(picture, boxes.tolist(), names,
                                colours=[2 if p == t else 0 for p, t in zip(predicted, labels, strict=True)]))
        titles.append(f"{hits}/{len(labels)} right")
    return save_grid(tiles, path, columns=count, titles=titles, scale=3), correct, total
