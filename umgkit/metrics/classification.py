"""Classification metrics over a whole dataset: top-k, per-class accuracy, confusion matrix.

Conventions: ``logits`` are ``(N, C)`` scores (any monotone scale), ``labels`` are ``(N,)`` class
indices in ``[0, C)``.

Tie rule for top-k (documented because it changes numbers when scores tie, e.g. an all-zero head):
a sample is correct at ``k`` when **fewer than k classes score strictly higher** than the true class
(the optimistic rule; ties never count against the true class). It is deterministic and does not
depend on ``torch.topk``'s arbitrary order among equal scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["topk_accuracy", "confusion_matrix", "per_class_accuracy", "classification_metrics"]


def _check(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"expected logits (N, C) and labels (N,), got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}.")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[1]}) (the logits' class count); got "
                         f"range [{int(labels.min())}, {int(labels.max())}]. Check data.num_classes "
                         "against the head's class count.")


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Fraction of samples correct at each ``k`` (see the module docstring for the tie rule).

    ``k`` larger than the class count is clipped to ``C`` (so top-5 over 3 classes is 1.0).
    Returns ``{k: accuracy}`` keyed by the requested ``k``; nan for an empty set.
    """
    _check(logits, labels)
    logits = logits.float()
    true = logits.gather(1, labels.long()[:, None])  # (N, 1)
    higher = (logits > true).sum(dim=1)  # (N,) classes strictly above the true class
    out = {}
    for k in ks:
        kk = min(int(k), logits.shape[1])
        out[int(k)] = float((higher < kk).float().mean()) if labels.numel() else float("nan")
    return out


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(C, C)`` int64 counts; row = true class, column = predicted class."""
    idx = labels.long() * num_classes + preds.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """``(C,)`` recall per class from a confusion matrix; nan for classes absent from the labels."""
    confusion = confusion.double()
    totals = confusion.sum(dim=1)
    acc = confusion.diagonal() / totals
    return torch.where(totals > 0, acc, torch.full_like(acc, float("nan")))


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict:
    """``top1``, ``top5`` (per ``ks``) and ``mean_class_acc`` (mean over classes present in ``labels``).

    Argmax for the confusion matrix takes the lowest index among tied maxima (torch's rule), so the
    confusion-based numbers can be below top-1 under the optimistic tie rule when scores tie.
    """
    topk = topk_accuracy(logits, labels, ks)
    out = {f"top{k}": v for k, v in topk.items()}
    conf = confusion_matrix(logits.argmax(dim=1), labels, logits.shape[1])
    per_class = per_class_accuracy(conf)
    present = per_class[~per_class.isnan()]
    out["mean_class_acc"] = float(present.mean()) if present.numel() else float("nan")
    return out
