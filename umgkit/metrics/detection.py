"""COCO box / mask AP exactly as the reference tool computes it: pycocotools' COCOeval on COCO JSON.

Predictions become a COCO *results* list (``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``,
plus ``"segmentation"``: compressed RLE with ``counts`` as str, for masks), which `write_results` saves as
the JSON file COCO's tools read. Ground truth is the dataset's instances JSON, or `coco_gt_from_targets`
builds the same structure from loaded targets (readers without a JSON file, tests). `coco_evaluate`
returns COCOeval's first six statistics under ``<prefix>AP``, ``AP50``, ``AP75``, ``APs``, ``APm``,
``APl`` as fractions in [0, 1]; an area range without ground truth (COCOeval's -1) is reported as nan.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .._io import atomic_write_text

__all__ = ["AP_NAMES", "encode_masks", "detections_to_coco", "coco_gt_from_targets", "load_coco_gt",
           "write_results", "coco_evaluate"]

AP_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]


def encode_masks(masks: torch.Tensor | np.ndarray) -> list[dict]:
    """Binary masks ``(N, H, W)`` -> compressed RLEs with ``counts`` as str (JSON-ready)."""
    arr = np.asarray(masks, dtype=np.uint8).reshape(-1, *np.shape(masks)[-2:])  # (N, H, W)
    rles = mask_utils.encode(np.asfortranarray(arr.transpose(1, 2, 0))) if len(arr) else []  # wants (H, W, N)
    return [{"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")} for r in rles]


def _xywh(boxes: torch.Tensor) -> list[list[float]]:
    b = boxes.detach().float().cpu().reshape(-1, 4)
    return torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], 1).tolist()


def detections_to_coco(image_id: int, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                       label_to_cat_id: Sequence[int], masks: Sequence[dict] | None = None) -> list[dict]:
    """One image's detections (XYXY absolute pixels, contiguous labels) -> COCO result dicts.

    ``masks`` are RLEs from `encode_masks` (one per detection); with them each result also carries
    ``"segmentation"`` (used by iouType ``segm``; ``bbox`` evaluation reads ``"bbox"`` only).
    """
    out = []
    for i, (box, score, label) in enumerate(zip(_xywh(boxes), scores.tolist(), labels.tolist(), strict=True)):
        res = {"image_id": int(image_id), "category_id": int(label_to_cat_id[int(label)]),
               "bbox": [round(v, 3) for v in box], "score": round(float(score), 5)}
        if masks is not None:
            res["segmentation"] = masks[i]
        out.append(res)
    return out


def coco_gt_from_targets(images: Sequence[dict], targets: Sequence[dict], label_to_cat_id: Sequence[int],
                         class_names: Sequence[str]) -> dict:
    """A COCO instances dict from loaded targets (boxes XYXY in each image's ``height`` x ``width`` frame).

    ``images``: ``[{"id", "height", "width"}]``; ``targets``: per image ``{"boxes", "labels"[, "iscrowd",
    "masks" (K, H, W) or "rles"]}``. Areas are mask areas when masks are given, else box areas.
    """
    anns = []
    for info, tgt in zip(images, targets, strict=True):
        rles = tgt.get("rles")
        if rles is None and tgt.get("masks") is not None:
            rles = encode_masks(tgt["masks"])
        crowd = tgt.get("iscrowd")
        for k, (box, label) in enumerate(zip(_xywh(tgt["boxes"]), tgt["labels"].tolist(), strict=True)):
            ann = {"id": len(anns) + 1, "image_id": int(info["id"]),
                   "category_id": int(label_to_cat_id[label]), "bbox": box, "area": box[2] * box[3],
                   "iscrowd": int(crowd[k]) if crowd is not None else 0}
            if rles is not None:
                ann["segmentation"] = rles[k]
                ann["area"] = float(mask_utils.area({**rles[k], "counts": rles[k]["counts"].encode()}))
            anns.append(ann)
    cats = [{"id": int(c), "name": n} for c, n in zip(label_to_cat_id, class_names, strict=True)]
    infos = [{"id": int(i["id"]), "height": int(i["height"]), "width": int(i["width"])} for i in images]
    return {"images": infos, "annotations": anns, "categories": cats}


def load_coco_gt(source: str | Path | dict | COCO) -> COCO:
    """A pycocotools ``COCO`` from an instances JSON path, an in-memory dict or an existing object."""
    if isinstance(source, COCO):
        return source
    with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints loading progress
        if isinstance(source, dict):
            coco = COCO()
            coco.dataset = source
            coco.createIndex()
            return coco
        return COCO(str(source))


def write_results(path: str | Path, results: Sequence[dict]) -> Path:
    """Save a COCO results list as JSON (atomic write), the file ``COCO.loadRes`` and COCO tools read."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(list(results)))


def coco_evaluate(gt: str | Path | dict | COCO, results: Sequence[dict] | str | Path, iou_type: str = "bbox",
                  image_ids: Sequence[int] | None = None, prefix: str = "",
                  summary: list[str] | None = None) -> dict[str, float]:
    """COCOeval ``iou_type`` (``bbox`` | ``segm``) over ``image_ids`` (default: every GT image).

    ``results``: a results list or the path of a results JSON. With no detections at all every AP is
    0.0 (nothing was found; COCOeval itself cannot load an empty list). COCOeval's printed table is
    captured and appended to ``summary`` when a list is given.
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type='{iou_type}'; choose 'bbox' or 'segm'.")
    coco_gt = load_coco_gt(gt)
    if isinstance(results, (str, Path)):
        results = json.loads(Path(results).read_text(encoding="utf-8"))
    results = list(results)
    if iou_type == "segm" and any("segmentation" not in r for r in results):
        raise ValueError("coco_evaluate(iou_type='segm'): every result needs a 'segmentation' RLE; "
                         "evaluate masks only for a model with a mask branch.")
    if not results:
        return {f"{prefix}{name}": 0.0 for name in AP_NAMES}
    # each iou type sees only its own geometry, so loadRes takes detection areas from it (box or mask)
    drop = "segmentation" if iou_type == "bbox" else "bbox"
    results = [{k: v for k, v in r.items() if k != drop} for r in results]
    text = io.StringIO()
    with contextlib.redirect_stdout(text), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools' numpy-2 warnings
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    if summary is not None:
        summary.append(text.getvalue())
    stats = [float(s) for s in evaluator.stats[:6]]
    return {f"{prefix}{name}": (math.nan if s < 0 else s) for name, s in zip(AP_NAMES, stats, strict=True)}
