"""COCO box / mask AP through pycocotools: perfect predictions give 1.0, known partial cases their value."""

import json
import math

import numpy as np
import pytest
import torch

from umgkit.data.instances import decode_segmentation
from umgkit.metrics.detection import (
    coco_evaluate,
    coco_gt_from_targets,
    detections_to_coco,
    encode_masks,
    write_results,
)


def _gt():
    """Two images (one 40x60, one 30x30), three instances of two categories with ids 3 and 7."""
    masks0 = torch.zeros(2, 40, 60, dtype=torch.uint8)
    masks0[0, 5:25, 10:30] = 1
    masks0[1, 20:38, 35:58] = 1
    masks1 = torch.zeros(1, 30, 30, dtype=torch.uint8)
    masks1[0, 2:12, 4:20] = 1
    images = [{"id": 11, "height": 40, "width": 60}, {"id": 12, "height": 30, "width": 30}]
    targets = [{"boxes": torch.tensor([[10.0, 5, 30, 25], [35, 20, 58, 38]]), "labels": torch.tensor([0, 1]),
                "masks": masks0},
               {"boxes": torch.tensor([[4.0, 2, 20, 12]]), "labels": torch.tensor([1]), "masks": masks1}]
    return coco_gt_from_targets(images, targets, label_to_cat_id=[3, 7], class_names=["cat", "dog"]), targets


def _perfect(targets, image_ids=(11, 12)):
    out = []
    for image_id, t in zip(image_ids, targets, strict=True):
        out += detections_to_coco(image_id, t["boxes"], torch.ones(len(t["boxes"])), t["labels"], [3, 7],
                                  encode_masks(t["masks"]))
    return out


def test_predictions_identical_to_ground_truth_give_ap_1(tmp_path):
    """ACCEPTANCE: a results JSON equal to the ground truth scores AP 1.0 (boxes and masks)."""
    gt, targets = _gt()
    path = write_results(tmp_path / "results.json", _perfect(targets))
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    box = coco_evaluate(tmp_path / "gt.json", path, "bbox")
    mask = coco_evaluate(gt, path, "segm", prefix="mask_")
    for metrics, prefix in ((box, ""), (mask, "mask_")):
        for name in ("AP", "AP50", "AP75", "APs"):
            assert metrics[f"{prefix}{name}"] == pytest.approx(1.0)
        assert math.isnan(metrics[f"{prefix}APl"])  # no ground truth above 96^2 px: COCOeval's -1


def test_partial_detections_give_the_101_point_interpolated_values():
    gt, targets = _gt()
    t = targets[0]
    found = detections_to_coco(11, t["boxes"], torch.ones(2), t["labels"], [3, 7])  # image 11 only
    # category 3: its one object found -> 1; category 7: one of its two objects (images 11, 12) found at
    # precision 1 -> recall thresholds 0.00..0.50 count, 51 of COCO's 101 points
    assert coco_evaluate(gt, found, "bbox")["AP50"] == pytest.approx((1 + 51 / 101) / 2)
    assert coco_evaluate(gt, found, "bbox", image_ids=[11])["AP50"] == pytest.approx(1.0)
    # a wrong label beside a right one at equal score: category 7 ranks the false positive first
    # (stable sort) -> precision 0.5 at recall 1 -> 0.5; category 3 missed -> 0
    wrong = detections_to_coco(11, t["boxes"], torch.ones(2), torch.tensor([1, 1]), [3, 7])
    assert coco_evaluate(gt, wrong, "bbox", image_ids=[11])["AP50"] == pytest.approx(0.25)


def test_shifted_box_passes_iou_50_not_75_and_empty_results_score_zero():
    gt, targets = _gt()
    shifted = []
    for image_id, t in zip((11, 12), targets, strict=True):
        boxes = t["boxes"].clone()
        w = boxes[:, 2] - boxes[:, 0]
        boxes[:, [0, 2]] += (w * 0.2)[:, None]  # IoU = 0.8 / 1.2 = 0.667
        shifted += detections_to_coco(image_id, boxes, torch.ones(len(boxes)), t["labels"], [3, 7])
    metrics = coco_evaluate(gt, shifted, "bbox")
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["AP75"] == pytest.approx(0.0)
    assert coco_evaluate(gt, [], "bbox")["AP"] == 0.0
    with pytest.raises(ValueError, match="segmentation"):
        coco_evaluate(gt, shifted, "segm")


def test_rle_round_trip_and_gt_areas():
    gt, targets = _gt()
    assert [a["area"] for a in gt["annotations"]] == [400.0, 414.0, 160.0]  # mask pixel counts
    assert [a["category_id"] for a in gt["annotations"]] == [3, 7, 7]
    rle = encode_masks(targets[0]["masks"])[1]
    decoded = decode_segmentation(rle, 40, 60)
    assert np.array_equal(decoded, targets[0]["masks"][1].numpy())
