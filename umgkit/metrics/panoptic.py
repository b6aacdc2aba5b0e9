"""Panoptic quality (PQ / SQ / RQ) computed as panopticapi's ``pq_compute`` computes it.

Per image (`pq_image_counts`), with segment-id maps whose id 0 is VOID:

- prediction areas are counted from the prediction map; ground-truth areas come from the segment's
  ``area`` (the JSON field, as panopticapi reads it) or, when absent, from the map;
- a (gt, pred) pair of the same category matches when ``IoU > 0.5`` (strictly), where the union leaves
  out the predicted pixels that fall on VOID: ``union = |P| + |G| - |P & G| - |P & VOID|``; crowd
  ground-truth segments (``iscrowd = 1``) are never matched;
- an unmatched, non-crowd gt segment is a false negative; an unmatched prediction is a false positive
  unless more than half of it lies on VOID plus the crowd region of its own category (panopticapi keeps
  one crowd segment per category: the last listed), in which case it is ignored.

`pq_summary` averages over categories: classes with ``TP + FP + FN = 0`` are dropped from the mean (their
per-class entries are 0, as panopticapi reports them); ``PQ_c = sum IoU / (TP + FP/2 + FN/2)``,
``SQ_c = sum IoU / TP`` (0 without TP), ``RQ_c = TP / (TP + FP/2 + FN/2)``. Values are fractions (panopticapi
prints percentages). A group without any counted class (e.g. no stuff) gives ``nan`` where panopticapi
would divide by zero.

Counts are a ``(C, 4)`` float64 array ``[TP, FP, FN, sum IoU]`` per category, so they sum across images
and processes. Files: COCO panoptic PNG (id = R + 256 G + 256^2 B) + JSON, read and written here;
`pq_compute_files` evaluates a prediction folder against a ground-truth folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .._io import atomic_write, atomic_write_text
from ..data.panoptic import id_to_rgb, rgb_to_id

__all__ = ["VOID", "OFFSET", "pq_image_counts", "pq_summary", "read_panoptic_png", "write_panoptic_png",
           "write_panoptic_json", "pq_compute_files"]

VOID = 0
OFFSET = 256 * 256 * 256  # larger than any segment id, so gt * OFFSET + pred is a unique pair code


def pq_image_counts(gt_ids: np.ndarray, gt_segments: Sequence[Mapping[str, Any]], pred_ids: np.ndarray,
                    pred_segments: Sequence[Mapping[str, Any]], categories: Sequence[int],
                    image: str = "") -> np.ndarray:
    """``(C, 4)`` float64 ``[TP, FP, FN, sum IoU]`` for one image; row ``i`` is ``categories[i]``.

    ``*_ids``: ``(H, W)`` integer segment-id maps (0 = VOID). ``*_segments``: dicts with ``id`` and
    ``category_id`` (gt also ``iscrowd``, optional ``area``). A map id missing from its segment list, a
    listed prediction absent from its map, or an unknown category raises (as panopticapi does).
    """
    gt_ids, pred_ids = np.asarray(gt_ids, np.int64), np.asarray(pred_ids, np.int64)
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(f"PQ {image}: ground truth {gt_ids.shape} and prediction {pred_ids.shape} maps "
                         "differ in size; resize the prediction to the ground truth first.")
    row = {int(c): i for i, c in enumerate(categories)}
    counts = np.zeros((len(row), 4), np.float64)
    gt = {int(s["id"]): dict(s) for s in gt_segments}
    pred = {int(s["id"]): dict(s) for s in pred_segments}
    for kind, segs in (("ground-truth", gt), ("predicted", pred)):
        for sid, seg in segs.items():
            if int(seg["category_id"]) not in row:
                raise ValueError(f"PQ {image}: {kind} segment {sid} has unknown category_id "
                                 f"{seg['category_id']}; known: {sorted(row)}.")

    listed = set(pred)
    for sid, count in zip(*np.unique(pred_ids, return_counts=True), strict=True):
        sid = int(sid)
        if sid not in pred:
            if sid == VOID:
                continue
            raise ValueError(f"PQ {image}: segment {sid} is in the predicted PNG but not in its JSON.")
        pred[sid]["area"] = int(count)
        listed.discard(sid)
    if listed:
        raise ValueError(f"PQ {image}: predicted segments {sorted(listed)} are listed in the JSON but absent "
                         "from the PNG.")
    gt_counts = dict(zip(*(a.tolist() for a in np.unique(gt_ids, return_counts=True)), strict=True))
    for sid, seg in gt.items():
        seg.setdefault("area", gt_counts.get(sid, 0))
    unknown = sorted(set(gt_counts) - set(gt) - {VOID})
    if unknown:
        raise ValueError(f"PQ {image}: ground-truth PNG has segment ids {unknown[:5]} its JSON does not "
                         "list.")

    codes, inter = np.unique(gt_ids * OFFSET + pred_ids, return_counts=True)
    pairs = {(int(c // OFFSET), int(c % OFFSET)): int(n) for c, n in zip(codes, inter, strict=True)}

    gt_matched, pred_matched = set(), set()
    for (g, p), n in pairs.items():
        if g not in gt or p not in pred or gt[g].get("iscrowd", 0) == 1:
            continue
        if gt[g]["category_id"] != pred[p]["category_id"]:
            continue
        union = pred[p]["area"] + gt[g]["area"] - n - pairs.get((VOID, p), 0)
        iou = n / union
        if iou > 0.5:
            r = row[int(gt[g]["category_id"])]
            counts[r, 0] += 1
            counts[r, 3] += iou
            gt_matched.add(g)
            pred_matched.add(p)

    crowd_of_category = {}
    for g, seg in gt.items():
        if g in gt_matched:
            continue
        if seg.get("iscrowd", 0) == 1:
            crowd_of_category[int(seg["category_id"])] = g
            continue
        counts[row[int(seg["category_id"])], 2] += 1
    for p, seg in pred.items():
        if p in pred_matched:
            continue
        on_void = pairs.get((VOID, p), 0)
        cat = int(seg["category_id"])
        if cat in crowd_of_category:
            on_void += pairs.get((crowd_of_category[cat], p), 0)
        if on_void / seg["area"] > 0.5:
            continue
        counts[row[cat], 1] += 1
    return counts


def pq_summary(counts: np.ndarray, isthing: Sequence[bool], names: Sequence[str] | None = None,
               per_class: bool = True) -> dict[str, float]:
    """``PQ/SQ/RQ`` over all classes, ``*_th`` over things, ``*_st`` over stuff (fractions), the class
    counts ``n``/``n_th``/``n_st``, and with ``per_class`` ``PQ.<name>``/``SQ.<name>``/``RQ.<name>``.
    """
    counts = np.asarray(counts, np.float64)
    if counts.shape != (len(isthing), 4):
        raise ValueError(f"pq_summary: counts {counts.shape} do not match {len(isthing)} categories x 4.")
    tp, fp, fn, iou = counts.T
    denom = tp + 0.5 * fp + 0.5 * fn
    present = (tp + fp + fn) > 0
    safe = np.where(present, denom, 1.0)
    pq = np.where(present, iou / safe, 0.0)
    sq = np.where(tp > 0, iou / np.maximum(tp, 1.0), 0.0)
    rq = np.where(present, tp / safe, 0.0)
    things = np.asarray(isthing, bool)
    out: dict[str, float] = {}
    for suffix, sel in (("", np.ones_like(things)), ("_th", things), ("_st", ~things)):
        keep = sel & present
        n = int(keep.sum())
        for key, values in (("PQ", pq), ("SQ", sq), ("RQ", rq)):
            out[key + suffix] = float(values[keep].mean()) if n else float("nan")
        out["n" + suffix] = float(n)
    if per_class:
        names = list(names) if names is not None else [str(i) for i in range(len(things))]
        for i, name in enumerate(names):
            out.update({f"PQ.{name}": float(pq[i]), f"SQ.{name}": float(sq[i]), f"RQ.{name}": float(rq[i])})
    return out


# ----------------------------------------------------------------------------------------- files
def read_panoptic_png(path: str | os.PathLike) -> np.ndarray:
    """``(H, W)`` int64 segment ids from a COCO panoptic PNG."""
    with Image.open(path) as im:
        if im.mode != "RGB":
            raise ValueError(f"Panoptic PNG {path} has mode {im.mode}; expected RGB-encoded ids "
                             "(id = R + 256 G + 256^2 B).")
        return rgb_to_id(np.asarray(im))


def write_panoptic_png(ids: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``(H, W)`` ids (< 256^3) as an RGB PNG, atomically."""
    ids = np.asarray(ids, np.int64)
    if ids.min(initial=0) < 0 or ids.max(initial=0) >= OFFSET:
        raise ValueError(f"write_panoptic_png {path}: ids must lie in [0, 256^3); got "
                         f"{ids.min()}..{ids.max()}.")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: Image.fromarray(id_to_rgb(ids)).save(tmp, format="PNG"))


def write_panoptic_json(path: str | os.PathLike, annotations: list[dict], categories: list[dict],
                        images: list[dict] | None = None) -> Path:
    """COCO panoptic JSON: ``{"annotations": [{image_id, file_name, segments_info}], "categories", ...}``."""
    data = {"annotations": annotations, "categories": categories}
    if images is not None:
        data["images"] = images
    return atomic_write_text(path, json.dumps(data))


def pq_compute_files(gt_json: str | os.PathLike, gt_folder: str | os.PathLike, pred_json: str | os.PathLike,
                     pred_folder: str | os.PathLike, per_class: bool = True) -> dict[str, float]:
    """PQ of a COCO panoptic prediction (JSON + PNG folder) against the ground truth, as panopticapi.

    Images are matched by ``image_id``; every ground-truth image needs a prediction. Categories (and
    ``isthing``) come from the ground-truth JSON. Per-class keys use the category names.
    """
    gt_data = json.loads(Path(gt_json).read_text(encoding="utf-8"))
    pred_data = json.loads(Path(pred_json).read_text(encoding="utf-8"))
    cats = sorted(gt_data["categories"], key=lambda c: c["id"])
    cat_ids = [int(c["id"]) for c in cats]
    preds = {a["image_id"]: a for a in pred_data["annotations"]}
    total = np.zeros((len(cats), 4), np.float64)
    for ann in gt_data["annotations"]:
        if ann["image_id"] not in preds:
            raise ValueError(f"{pred_json}: no prediction for the image with id {ann['image_id']}.")
        pred = preds[ann["image_id"]]
        total += pq_image_counts(read_panoptic_png(Path(gt_folder) / ann["file_name"]), ann["segments_info"],
                                 read_panoptic_png(Path(pred_folder) / pred["file_name"]),
                                 pred["segments_info"], cat_ids, image=str(ann["file_name"]))
    return pq_summary(total, [bool(c.get("isthing", 1)) for c in cats], [c["name"] for c in cats],
                      per_class=per_class)
