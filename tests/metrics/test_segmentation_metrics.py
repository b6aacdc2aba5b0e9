"""Segmentation metrics against hand-computed confusion matrices (mmseg IoUMetric definitions)."""

import math

import pytest
import torch

from umgkit.metrics.segmentation import ConfusionMatrix, segmentation_confusion_matrix, segmentation_scores

IGN = 255


def test_confusion_matrix_counts_and_ignore():
    gt = torch.tensor([[0, 0, 1], [1, 2, IGN]])
    pred = torch.tensor([[0, 1, 1], [1, 0, 2]])  # the prediction under the ignore pixel is not counted
    cm = segmentation_confusion_matrix(pred, gt, num_classes=3)
    expected = torch.tensor([[1, 1, 0],   # gt 0: one right, one called 1
                             [0, 2, 0],   # gt 1: both right
                             [1, 0, 0]])  # gt 2: called 0
    assert torch.equal(cm, expected)


def test_scores_by_hand():
    # rows = gt, cols = pred
    m = torch.tensor([[3, 1, 0],
                      [2, 4, 0],
                      [0, 0, 0]])  # class 2: never in gt, never predicted -> nan, excluded
    s = segmentation_scores(m, ["a", "b", "c"])
    iou_a, iou_b = 3 / (3 + 2 + 1), 4 / (4 + 1 + 2)
    acc_a, acc_b = 3 / 4, 4 / 6
    assert s["IoU.a"] == pytest.approx(iou_a) and s["IoU.b"] == pytest.approx(iou_b)
    assert math.isnan(s["IoU.c"]) and math.isnan(s["Acc.c"])
    assert s["mIoU"] == pytest.approx((iou_a + iou_b) / 2)
    assert s["mAcc"] == pytest.approx((acc_a + acc_b) / 2)
    assert s["aAcc"] == pytest.approx(7 / 10)


def test_predicted_but_absent_class_counts_as_zero_iou():
    m = torch.tensor([[2, 1],
                      [0, 0]])  # class 1 predicted once, never in gt: IoU 0 (counted), Acc nan (excluded)
    s = segmentation_scores(m, per_class=True)
    assert s["IoU.1"] == 0.0 and math.isnan(s["Acc.1"])
    assert s["mIoU"] == pytest.approx((2 / 3 + 0.0) / 2)
    assert s["mAcc"] == pytest.approx(2 / 3)
    assert "IoU.0" in s and set(segmentation_scores(m, per_class=False)) == {"mIoU", "mAcc", "aAcc"}


def test_dataset_level_not_per_image_mean():
    acc = ConfusionMatrix(num_classes=2, class_names=["x", "y"])
    acc.update(torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 0, 1]))  # image 1: y missed
    acc.update(torch.tensor([1, 1]), torch.tensor([1, 1]))  # image 2: perfect
    assert torch.equal(acc.matrix, torch.tensor([[3, 0], [1, 2]]))
    s = acc.compute()
    assert s["IoU.x"] == pytest.approx(3 / 4) and s["IoU.y"] == pytest.approx(2 / 3)
    assert s["aAcc"] == pytest.approx(5 / 6)
    acc.reset()
    assert int(acc.matrix.sum()) == 0


def test_reduce_zero_label():
    stored = torch.tensor([0, 1, 2, 3, IGN])  # 0 'other' -> ignore, k -> k - 1
    pred = torch.tensor([2, 0, 1, 0, 1])
    cm = segmentation_confusion_matrix(pred, stored, num_classes=3, reduce_zero_label=True)
    assert torch.equal(cm, torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0]]))
    acc = ConfusionMatrix(3, reduce_zero_label=True)
    acc.update(pred, stored)
    assert torch.equal(acc.matrix, cm)
    assert stored.tolist() == [0, 1, 2, 3, IGN]  # the caller's labels are left alone


def test_out_of_range_label_raises():
    with pytest.raises(ValueError, match="outside"):
        segmentation_confusion_matrix(torch.tensor([0]), torch.tensor([5]), num_classes=3)
    with pytest.raises(ValueError, match="differ"):
        segmentation_confusion_matrix(torch.zeros(2, 2), torch.zeros(2, 3), num_classes=3)


class _SumTwoProcesses:
    """Stands in for an Accelerator whose other process holds the same matrix."""
    device = torch.device("cpu")

    def reduce(self, tensor, reduction="sum"):
        assert reduction == "sum"
        return tensor * 2


def test_sync_sums_over_processes():
    acc = ConfusionMatrix(2)
    acc.update(torch.tensor([0, 1]), torch.tensor([0, 0]))
    acc.sync(_SumTwoProcesses())
    assert torch.equal(acc.matrix, torch.tensor([[2, 2], [0, 0]]))
