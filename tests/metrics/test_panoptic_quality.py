"""PQ / SQ / RQ on hand-built maps whose answers are worked out by hand (panopticapi's rules)."""

import json
import math

import numpy as np
import pytest

from umgkit.metrics.panoptic import (
    pq_compute_files,
    pq_image_counts,
    pq_summary,
    read_panoptic_png,
    write_panoptic_png,
)

CATS = [1, 2, 3]  # 1 = thing "disc", 2 = stuff "sky", 3 = stuff "sand"
THING = [True, False, False]
NAMES = ["disc", "sky", "sand"]


def _row(*spans, width=20):
    """A 1 x width id map from ``(start, stop, id)`` spans; the rest is VOID (0)."""
    ids = np.zeros((1, width), np.int64)
    for start, stop, sid in spans:
        ids[0, start:stop] = sid
    return ids


def _seg(sid, cat, crowd=0):
    return {"id": sid, "category_id": cat, "iscrowd": crowd}


def test_perfect_match_gives_one_and_absent_classes_are_dropped():
    gt = _row((0, 10, 5), (10, 20, 7))
    counts = pq_image_counts(gt, [_seg(5, 1), _seg(7, 2)], gt.copy(), [_seg(5, 1), _seg(7, 2)], CATS)
    np.testing.assert_array_equal(counts, [[1, 0, 0, 1.0], [1, 0, 0, 1.0], [0, 0, 0, 0]])
    out = pq_summary(counts, THING, NAMES)
    assert out["PQ"] == out["SQ"] == out["RQ"] == 1.0
    assert out["n"] == 2 and out["n_th"] == 1 and out["n_st"] == 1  # "sand" has no TP+FP+FN: dropped
    assert out["PQ.sand"] == 0.0


def test_iou_just_above_half_matches():
    gt = _row((0, 10, 5), (10, 20, 7))
    pred = _row((0, 8, 1), (10, 14, 1), (14, 20, 2))  # disc: 8 of its 12 px on the gt disc -> 8 / 14
    counts = pq_image_counts(gt, [_seg(5, 1), _seg(7, 2)], pred, [_seg(1, 1), _seg(2, 2)], CATS)
    assert counts[0, 0] == 1 and counts[0, 1] == 0 and counts[0, 2] == 0
    assert counts[0, 3] == pytest.approx(8 / 14)
    # sky: 6 px predicted inside a 10 px gt -> IoU 0.6, a match
    assert counts[1, 0] == 1 and counts[1, 3] == pytest.approx(0.6)
    out = pq_summary(counts, THING, NAMES)
    assert out["PQ_th"] == pytest.approx(8 / 14) and out["RQ_th"] == 1.0
    assert out["PQ"] == pytest.approx((8 / 14 + 0.6) / 2)


def test_iou_exactly_half_is_no_match():
    gt = _row((0, 10, 5), (10, 20, 7))
    pred = _row((0, 6, 1), (10, 12, 1), (12, 20, 2))  # disc: 6 / (8 + 10 - 6) = 0.5, not > 0.5
    counts = pq_image_counts(gt, [_seg(5, 1), _seg(7, 2)], pred, [_seg(1, 1), _seg(2, 2)], CATS)
    np.testing.assert_array_equal(counts[0], [0, 1, 1, 0])  # one FP and one FN
    assert pq_summary(counts, THING, NAMES)["PQ.disc"] == 0.0


def test_void_pixels_leave_the_union_and_mostly_void_predictions_are_ignored():
    gt = _row((0, 10, 5))  # cols 10.. are VOID
    pred = _row((0, 14, 1), (15, 20, 3))  # disc spills 4 px onto VOID; a "sand" blob lies fully on VOID
    counts = pq_image_counts(gt, [_seg(5, 1)], pred, [_seg(1, 1), _seg(3, 3)], CATS)
    np.testing.assert_array_equal(counts[0], [1, 0, 0, 1.0])  # IoU = 10 / (14 + 10 - 10 - 4) = 1
    np.testing.assert_array_equal(counts[2], [0, 0, 0, 0])  # > 50% VOID: ignored, not a FP
    half = _row((0, 10, 5), (10, 20, 7))
    pred = _row((0, 10, 5), (10, 20, 7))
    pred[0, 18:20] = 9  # "sand" segment: 2 px, none on VOID -> a false positive of an absent stuff class
    counts = pq_image_counts(half, [_seg(5, 1), _seg(7, 2)], pred, [_seg(5, 1), _seg(7, 2), _seg(9, 3)], CATS)
    np.testing.assert_array_equal(counts[2], [0, 1, 0, 0])
    out = pq_summary(counts, THING, NAMES)
    assert out["n_st"] == 2 and out["PQ.sand"] == 0.0
    assert out["PQ_st"] == pytest.approx((0.8 + 0) / 2)  # sky: IoU 8 / 10


def test_crowd_regions_neither_match_nor_count():
    gt = _row((0, 10, 5), (10, 20, 7))  # 5 = a crowd of discs
    pred = _row((1, 9, 1), (10, 20, 2))  # a disc inside the crowd
    counts = pq_image_counts(gt, [_seg(5, 1, crowd=1), _seg(7, 2)], pred, [_seg(1, 1), _seg(2, 2)], CATS)
    np.testing.assert_array_equal(counts[0], [0, 0, 0, 0])  # no TP (crowd), no FN (crowd), no FP (on crowd)
    out = pq_summary(counts, THING, NAMES)
    assert out["n_th"] == 0 and math.isnan(out["PQ_th"]) and out["PQ"] == 1.0


def test_false_positive_halves_recognition():
    gt = _row((0, 10, 5), (10, 20, 7))
    pred = _row((0, 10, 5), (10, 16, 7), (16, 20, 8))  # an extra disc on the sky
    counts = pq_image_counts(gt, [_seg(5, 1), _seg(7, 2)], pred, [_seg(5, 1), _seg(7, 2), _seg(8, 1)], CATS)
    np.testing.assert_array_equal(counts[0], [1, 1, 0, 1.0])
    out = pq_summary(counts, THING, NAMES)
    assert out["RQ.disc"] == pytest.approx(1 / 1.5) and out["SQ.disc"] == 1.0
    assert out["PQ.disc"] == pytest.approx(1 / 1.5)


def test_bad_predictions_raise_with_the_segment():
    gt = _row((0, 10, 5))
    with pytest.raises(ValueError, match="segment 4 is in the predicted PNG"):
        pq_image_counts(gt, [_seg(5, 1)], _row((0, 10, 4)), [], CATS)
    with pytest.raises(ValueError, match=r"\[6\] are listed"):
        pq_image_counts(gt, [_seg(5, 1)], _row((0, 10, 5)), [_seg(5, 1), _seg(6, 1)], CATS)
    with pytest.raises(ValueError, match="unknown category_id 9"):
        pq_image_counts(gt, [_seg(5, 1)], _row((0, 10, 5)), [_seg(5, 9)], CATS)


def test_files_round_trip_match_in_memory(tmp_path):
    """COCO panoptic PNG (id = R + 256 G + 256^2 B) + JSON in, the same numbers out."""
    gt = np.zeros((4, 6), np.int64)
    gt[:, :3] = 1 + 256 * 3  # an id that needs the G channel
    gt[:, 3:] = 2 + 256 ** 2  # ... and the B channel
    pred = gt.copy()
    pred[0, :] = 0
    for folder, ids in (("gt", gt), ("pred", pred)):
        write_panoptic_png(ids, tmp_path / folder / "a.png")
        np.testing.assert_array_equal(read_panoptic_png(tmp_path / folder / "a.png"), ids)
    cats = [{"id": 1, "name": "disc", "isthing": 1}, {"id": 2, "name": "sky", "isthing": 0}]
    gseg = [_seg(1 + 256 * 3, 1), _seg(2 + 256 ** 2, 2)]
    pseg = [{"id": s["id"], "category_id": s["category_id"]} for s in gseg]
    (tmp_path / "gt.json").write_text(json.dumps({"categories": cats, "annotations": [
        {"image_id": 3, "file_name": "a.png", "segments_info": gseg}]}))
    (tmp_path / "pred.json").write_text(json.dumps({"annotations": [
        {"image_id": 3, "file_name": "a.png", "segments_info": pseg}]}))
    out = pq_compute_files(tmp_path / "gt.json", tmp_path / "gt", tmp_path / "pred.json", tmp_path / "pred")
    expected = pq_summary(pq_image_counts(gt, gseg, pred, pseg, [1, 2]), [True, False], ["disc", "sky"])
    assert out == expected and out["PQ"] == pytest.approx(0.75)  # each IoU = 9 / 12
