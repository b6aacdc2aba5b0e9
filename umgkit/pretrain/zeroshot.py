"""Zero-shot evaluation of a dual-encoder backbone at three granularities, with their chance levels.

- image classification: ``encode_image`` vs prompt-averaged class-name embeddings, top-1
  (chance ``1 / C``);
- region classification: ``embed_regions`` of the ground-truth boxes vs the same class embeddings,
  top-1 over every (non-crowd) box (chance ``1 / C``);
- segmentation: ``embed_pixels`` scored against the class embeddings, logits upsampled (bilinear) to the
  label map, argmax, one dataset-level confusion matrix -> mIoU (`umgkit.metrics.ConfusionMatrix`).
  Chance: the expected mIoU of a uniformly random labelling, ``mean_c n_c / (C n_c + N - n_c)`` from the
  ground-truth pixel counts ``n_c`` (``N`` labelled pixels), so it reflects the class balance.

Any backbone with ``encode_text`` and the granularity's method works (a stub in the tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..data.collate import collate_dicts
from ..metrics import ConfusionMatrix, topk_accuracy

__all__ = ["class_embeddings", "zeroshot_classification", "zeroshot_regions", "zeroshot_segmentation",
           "chance_miou", "format_zeroshot"]

DEFAULT_TEMPLATES = ("a photo of a {}.",)


@torch.no_grad()
def class_embeddings(backbone: Any, class_names: Sequence[str],
                     templates: Sequence[str] = DEFAULT_TEMPLATES) -> torch.Tensor:
    """``(C, D)`` L2-normalised mean over ``templates`` of each class name's text embedding."""
    if not class_names:
        raise ValueError("zero-shot evaluation needs class names; the dataset has none.")
    per_template = [backbone.encode_text([t.format(name) for name in class_names]) for t in templates]
    return F.normalize(torch.stack(per_template).mean(dim=0), dim=-1)


def _loader(dataset: Dataset, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_dicts)


def _device(backbone: Any) -> torch.device:
    return next(iter(backbone.parameters())).device


@torch.no_grad()
def zeroshot_classification(backbone: Any, dataset: Dataset, *, templates: Sequence[str] = DEFAULT_TEMPLATES,
                            batch_size: int = 64) -> dict[str, float]:
    """``{"top1", "chance", "images"}`` on a dataset of ``{"image", "label"}`` items."""
    classes = class_embeddings(backbone, dataset.class_names, templates)
    logits, labels = [], []
    for batch in _loader(dataset, batch_size):
        if not batch["batch_size"]:
            continue
        emb = backbone.encode_image(batch["image"].to(_device(backbone)))  # (B, D)
        logits.append((emb @ classes.t()).float().cpu())
        labels.append(torch.as_tensor(batch["label"]).cpu())
    logits_t, labels_t = torch.cat(logits), torch.cat(labels)
    return {"top1": topk_accuracy(logits_t, labels_t, ks=(1,))[1], "chance": 1.0 / len(dataset.class_names),
            "images": float(labels_t.numel())}


@torch.no_grad()
def zeroshot_regions(backbone: Any, dataset: Dataset, *, templates: Sequence[str] = DEFAULT_TEMPLATES,
                     batch_size: int = 64) -> dict[str, float]:
    """``{"top1", "chance", "regions"}`` on ``{"image", "boxes" (K, 4) XYXY, "labels" (K,)}`` items
    (crowd boxes, where ``iscrowd`` is given, are left out)."""
    classes = class_embeddings(backbone, dataset.class_names, templates)
    logits, labels = [], []
    for batch in _loader(dataset, batch_size):
        if not batch["batch_size"]:
            continue
        keep = [torch.as_tensor(c).reshape(-1) == 0 if c is not None else None
                for c in batch.get("iscrowd", [None] * batch["batch_size"])]
        boxes = [b if k is None else b[k] for b, k in zip(batch["boxes"], keep, strict=True)]
        lab = [lb if k is None else lb[k] for lb, k in zip(batch["labels"], keep, strict=True)]
        emb = backbone.embed_regions(batch["image"].to(_device(backbone)), boxes)  # (K, D)
        logits.append((emb @ classes.t()).float().cpu())
        labels.append(torch.cat(lab).cpu())
    logits_t, labels_t = torch.cat(logits), torch.cat(labels)
    if labels_t.numel() == 0:
        raise ValueError("zero-shot region classification: the dataset has no (non-crowd) boxes.")
    return {"top1": topk_accuracy(logits_t, labels_t, ks=(1,))[1], "chance": 1.0 / len(dataset.class_names),
            "regions": float(labels_t.numel())}


def chance_miou(matrix: torch.Tensor) -> float:
    """Expected mIoU of uniform random labels given the confusion matrix's ground-truth row sums."""
    n_c = matrix.sum(dim=1).double()  # (C,)
    c, n = n_c.numel(), n_c.sum()
    return float((n_c / (c * n_c + n - n_c)).mean())


@torch.no_grad()
def zeroshot_segmentation(backbone: Any, dataset: Dataset, *, templates: Sequence[str] = DEFAULT_TEMPLATES,
                          batch_size: int = 32, ignore_index: int = 255) -> dict[str, float]:
    """``{"mIoU", "chance", "aAcc", ...}`` on ``{"image", "label_map" (H, W)}`` items (labels already in
    ``[0, C)`` or ``ignore_index``, e.g. the ``ade20k`` reader with ``reduce_zero_label``)."""
    classes = class_embeddings(backbone, dataset.class_names, templates)  # (C, D)
    cm = ConfusionMatrix(len(dataset.class_names), ignore_index=ignore_index)
    for batch in _loader(dataset, batch_size):
        if not batch["batch_size"]:
            continue
        pix = backbone.embed_pixels(batch["image"].to(_device(backbone)))  # (B, D, h, w)
        logits = torch.einsum("bdhw,cd->bchw", pix, classes.to(pix.dtype))
        targets = batch["label_map"]
        targets = list(targets) if isinstance(targets, torch.Tensor) else targets
        for i, target in enumerate(targets):
            up = F.interpolate(logits[i:i + 1].float(), size=tuple(target.shape[-2:]), mode="bilinear",
                               align_corners=False)
            cm.update(up[0].argmax(dim=0).cpu(), target.cpu())
    scores = cm.compute(per_class=False)
    return {"mIoU": scores["mIoU"], "chance": chance_miou(cm.matrix), "aAcc": scores["aAcc"],
            "mAcc": scores["mAcc"]}


def format_zeroshot(results: dict[str, dict[str, float]]) -> list[str]:
    """Printable lines: one per granularity, value and chance level."""
    names = {"classification": ("zero-shot image classification top-1", "top1"),
             "regions": ("zero-shot region classification top-1", "top1"),
             "segmentation": ("zero-shot segmentation mIoU", "mIoU")}
    lines = []
    for key, (title, metric) in names.items():
        if key in results:
            r = results[key]
            lines.append(f"{title}: {r[metric]:.4f} (chance {r['chance']:.4f})")
    return lines
