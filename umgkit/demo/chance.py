"""What a predictor that ignores the image scores on each demo metric, so the report can compare.

Each figure is the expectation for uniformly random predictions on the actual held-out split, in the
same units as the metric the report shows.
"""

from __future__ import annotations

from math import comb

import numpy as np

__all__ = ["classification_chance", "retrieval_chance", "segmentation_chance"]


def classification_chance(num_classes: int) -> float:
    """Top-1 of a uniform guess, in percent."""
    return 100.0 / num_classes


def retrieval_chance(num_images: int, captions_per_image: int, ks: tuple[int, ...] = (1, 5, 10)) -> float:
    """Mean of R@K (both directions, percent) for a random ranking.

    Image -> text: at least one of the image's ``c`` captions among the top K of ``c * N``;
    text -> image: the one matching image among the top K of ``N``.
    """
    n, c = num_images, captions_per_image
    i2t = [1 - comb(c * n - c, min(k, c * n)) / comb(c * n, min(k, c * n)) for k in ks]
    t2i = [min(k, n) / n for k in ks]
    return 100.0 * float(np.mean(i2t + t2i))


def segmentation_chance(label_maps: list[np.ndarray], num_classes: int, ignore_index: int = 255) -> float:
    """Expected mIoU of uniformly random pixel labels, from the split's class frequencies ``f_c``.

    Per class, TP = f_c / K, FP = (1 - f_c) / K, FN = f_c (1 - 1/K) (as fractions of labelled pixels),
    so IoU_c = f_c / (1 + f_c (K - 1)); classes absent from the split are left out, as mIoU leaves them.
    """
    counts = np.zeros(num_classes, np.float64)
    for labels in label_maps:
        valid = labels[labels != ignore_index]
        counts += np.bincount(valid.ravel(), minlength=num_classes)[:num_classes]
    freq = counts / max(counts.sum(), 1.0)
    present = freq > 0
    iou = freq[present] / (1 + freq[present] * (num_classes - 1))
    return float(iou.mean()) if present.any() else 0.0
