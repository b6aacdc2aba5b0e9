"""Classification metrics against hand-computed answers, ties included."""

import math

import pytest
import torch

from umgkit.metrics.classification import (
    classification_metrics,
    confusion_matrix,
    per_class_accuracy,
    topk_accuracy,
)


def test_topk_hand_computed():
    logits = torch.tensor([[0.1, 0.7, 0.2],   # true 1: rank 1
                           [0.5, 0.3, 0.2],   # true 2: rank 3
                           [0.2, 0.5, 0.3]])  # true 2: rank 2
    labels = torch.tensor([1, 2, 2])
    acc = topk_accuracy(logits, labels, ks=(1, 2, 5))
    assert acc[1] == pytest.approx(1 / 3)
    assert acc[2] == pytest.approx(2 / 3)
    assert acc[5] == pytest.approx(1.0)  # k clipped to 3 classes


def test_topk_ties_are_optimistic():
    # sample 0: true class ties with one other at the top -> 0 strictly higher -> correct at k=1
    # sample 1: two classes strictly higher, one tie -> wrong at k=2, right at k=3
    logits = torch.tensor([[1.0, 1.0, 0.0, 0.0],
                           [3.0, 2.0, 1.0, 1.0]])
    labels = torch.tensor([1, 3])
    acc = topk_accuracy(logits, labels, ks=(1, 2, 3))
    assert acc == {1: 0.5, 2: 0.5, 3: 1.0}
    # all-equal scores: every sample counts as correct at k=1 under this rule
    assert topk_accuracy(torch.zeros(4, 5), torch.tensor([0, 1, 2, 3]), ks=(1,))[1] == 1.0


def test_confusion_and_per_class():
    preds = torch.tensor([0, 0, 1, 1, 1])
    labels = torch.tensor([0, 1, 1, 1, 0])
    conf = confusion_matrix(preds, labels, 3)
    assert conf.tolist() == [[1, 1, 0], [1, 2, 0], [0, 0, 0]]
    per_class = per_class_accuracy(conf)
    assert per_class[0] == pytest.approx(0.5) and per_class[1] == pytest.approx(2 / 3)
    assert math.isnan(float(per_class[2]))  # absent class


def test_classification_metrics_mean_class_excludes_absent():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 1])  # class 2 absent; acc class0 = 1, class1 = 2/3
    out = classification_metrics(logits, labels)
    assert out["top1"] == pytest.approx(0.75)
    assert out["top5"] == pytest.approx(1.0)
    assert out["mean_class_acc"] == pytest.approx((1 + 2 / 3) / 2)


def test_label_out_of_range_names_the_fix():
    with pytest.raises(ValueError, match="num_classes"):
        topk_accuracy(torch.zeros(2, 3), torch.tensor([0, 3]))
