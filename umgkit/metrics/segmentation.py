"""Semantic segmentation metrics from one dataset-level confusion matrix (mmseg IoUMetric definitions).

Definitions (the same as mmsegmentation's ``IoUMetric``, so numbers compare with published tables):

- one ``(C, C)`` confusion matrix ``M[gt, pred]`` is summed over **every labelled pixel of the whole
  dataset** (pixels whose ground truth is ``ignore_index`` are dropped, whatever was predicted there);
  per-image IoUs are never averaged.
- per class: ``TP = M[c, c]``, ``FN = row sum - TP``, ``FP = column sum - TP``;
  ``IoU = TP / (TP + FP + FN)`` and ``Acc = TP / (TP + FN)`` (recall).
- a class with no ground-truth and no predicted pixel has ``IoU = nan`` (0 / 0); a class with no
  ground-truth pixel has ``Acc = nan``; a class that was predicted but never present gets ``IoU = 0``.
- ``mIoU`` / ``mAcc`` are nan-means over classes (nan classes are excluded, not counted as 0);
  ``aAcc = sum TP / sum labelled pixels``.

Values are fractions in [0, 1] (mmseg prints percentages). ``reduce_zero_label`` reuses
`umgkit.data.reduce_zero_label_map` (0 -> ignore, k -> k - 1) on the ground truth before counting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..data.semantic import reduce_zero_label_map

__all__ = ["segmentation_confusion_matrix", "segmentation_scores", "ConfusionMatrix"]


def segmentation_confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                                  ignore_index: int = 255, reduce_zero_label: bool = False) -> torch.Tensor:
    """``(C, C)`` int64 counts ``M[gt, pred]`` over the pixels of ``pred`` / ``target`` (same shape).

    Pixels whose (reduced) target is ``ignore_index`` are dropped. A target value outside [0, C) that is
    not ``ignore_index``, or a prediction outside [0, C) on a labelled pixel, raises: counting it
    anywhere would silently change the score.
    """
    if pred.shape != target.shape:
        raise ValueError(f"segmentation_confusion_matrix: pred {tuple(pred.shape)} and target "
                         f"{tuple(target.shape)} differ; resize the prediction to the label size first.")
    target = target.long()
    if reduce_zero_label:
        target = reduce_zero_label_map(target.clone())
    keep = target != ignore_index
    gt, pr = target[keep], pred.long()[keep]
    for name, values in (("target", gt), ("prediction", pr)):
        bad = (values < 0) | (values >= num_classes)
        if bool(bad.any()):
            raise ValueError(f"segmentation_confusion_matrix: {name} value {int(values[bad][0])} is outside "
                             f"[0, {num_classes}) and not ignore_index={ignore_index}; check num_classes "
                             "and reduce_zero_label.")
    flat = gt * num_classes + pr
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def segmentation_scores(matrix: torch.Tensor, class_names: Sequence[str] | None = None,
                        per_class: bool = True) -> dict[str, float]:
    """``mIoU``, ``mAcc``, ``aAcc`` (fractions) and, with ``per_class``, ``IoU.<name>`` / ``Acc.<name>``.

    ``matrix`` is ``(C, C)`` with rows = ground truth, columns = prediction (see module docstring).
    """
    m = matrix.double().cpu()
    tp = m.diagonal()
    gt_area, pred_area = m.sum(1), m.sum(0)
    union = gt_area + pred_area - tp
    iou = tp / union  # 0 / 0 -> nan for classes absent from both
    acc = tp / gt_area  # 0 / 0 -> nan for classes absent from the ground truth
    total = gt_area.sum()
    out = {"mIoU": _nanmean(iou), "mAcc": _nanmean(acc),
           "aAcc": float(tp.sum() / total) if total > 0 else float("nan")}
    if per_class:
        names = list(class_names) if class_names is not None else [str(i) for i in range(len(tp))]
        if len(names) != len(tp):
            raise ValueError(f"segmentation_scores: {len(names)} class names for a {len(tp)}-class matrix.")
        out.update({f"IoU.{n}": float(v) for n, v in zip(names, iou.tolist(), strict=True)})
        out.update({f"Acc.{n}": float(v) for n, v in zip(names, acc.tolist(), strict=True)})
    return out


def _nanmean(values: torch.Tensor) -> float:
    valid = ~torch.isnan(values)
    return float(values[valid].mean()) if bool(valid.any()) else float("nan")


class ConfusionMatrix:
    """Accumulates a dataset-level confusion matrix; `sync` sums it over processes.

    Example:
        >>> cm = ConfusionMatrix(num_classes=2)
        >>> cm.update(torch.tensor([[0, 1], [1, 1]]), torch.tensor([[0, 1], [0, 255]]))
        >>> round(cm.compute(per_class=False)["mIoU"], 4)
        0.5
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, reduce_zero_label: bool = False,
                 class_names: Sequence[str] | None = None) -> None:
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        self.reduce_zero_label = bool(reduce_zero_label)
        self.class_names = list(class_names) if class_names is not None else None
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add the pixels of one prediction / label pair (any equal shapes, e.g. (H, W) or (B, H, W))."""
        self.add(segmentation_confusion_matrix(pred, target, self.num_classes, self.ignore_index,
                                               self.reduce_zero_label))

    def add(self, matrix: torch.Tensor) -> None:
        """Add a precomputed ``(C, C)`` (or stacked ``(N, C, C)``) count matrix."""
        matrix = matrix.reshape(-1, self.num_classes, self.num_classes).sum(0)
        self.matrix += matrix.to(self.matrix.device, torch.int64)

    def sync(self, accelerator: Any) -> None:
        """Sum the matrix over processes (``accelerator.reduce``); every process then holds the total.

        Only exact when the processes saw disjoint samples; Accelerate's ``even_batches`` pads the last
        batch with repeats, so a loader-driven evaluation should gather per-sample matrices with
        ``gather_for_metrics`` instead (what the ``semantic`` task does).
        """
        local = self.matrix.to(accelerator.device)
        self.matrix = accelerator.reduce(local, reduction="sum").cpu()

    def compute(self, per_class: bool = True) -> dict[str, float]:
        return segmentation_scores(self.matrix, self.class_names, per_class=per_class)

    def reset(self) -> None:
        self.matrix.zero_()
