"""From one image's query predictions to panoptic, semantic and instance outputs (Mask2Former's rules).

Inputs: ``logits`` ``(Q, K + 1)`` (last = "no object") and ``mask_logits`` ``(Q, h, w)``; masks are
up-sampled (bilinear, on logits) to the requested ``size`` first.

- panoptic: queries whose best class is not "no object" and whose score exceeds ``object_threshold`` are
  kept; each pixel goes to the kept query with the largest ``score * sigmoid(mask)``; a query keeps its
  segment only if its pixels cover more than ``overlap_threshold`` of its own ``sigmoid >= mask_threshold``
  area (drops mostly-occluded masks), and only its pixels with ``sigmoid >= mask_threshold``; stuff
  queries of one class merge into one segment. transformers' ``remove_low_and_no_objects`` /
  ``compute_segments`` do this (plus the last rule, which they leave out); ids start at 1, 0 is VOID.
  Segments under ``min_area`` pixels (0 = keep all) become VOID.
- semantic: ``sum_q softmax(logits)[q, :K] * sigmoid(mask_q)`` -> ``(K, H, W)`` scores.
- instance: the top ``Q`` (query, thing class) pairs by class probability, each scored
  ``p(class) * mean(sigmoid(mask) over mask > 0)``; masks are ``mask_logits > 0``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers.models.mask2former.image_processing_mask2former import (
    compute_segments,
    remove_low_and_no_objects,
)

__all__ = ["upsample_masks", "panoptic_inference", "semantic_inference", "instance_inference"]


def upsample_masks(mask_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(Q, h, w)`` -> ``(Q, *size)`` float logits (bilinear)."""
    if tuple(mask_logits.shape[-2:]) == tuple(size):
        return mask_logits.float()
    return F.interpolate(mask_logits[None].float(), size=size, mode="bilinear", align_corners=False)[0]


@torch.no_grad()
def panoptic_inference(logits: torch.Tensor, mask_logits: torch.Tensor, size: tuple[int, int],
                       isthing: Sequence[bool], object_threshold: float = 0.8, mask_threshold: float = 0.5,
                       overlap_threshold: float = 0.8, min_area: int = 0) -> tuple[torch.Tensor, list[dict]]:
    """``(ids (H, W) int64, segments)``; segment = ``{"id", "category_id" (label), "isthing", "score"}``."""
    probs = upsample_masks(mask_logits, size).sigmoid()
    scores, labels = logits.float().softmax(-1).max(-1)
    probs, scores, labels = remove_low_and_no_objects(probs, scores, labels, object_threshold,
                                                      logits.shape[-1] - 1)
    if probs.shape[0] == 0:
        return torch.zeros(size, dtype=torch.int64, device=logits.device), []
    stuff = {k for k, t in enumerate(isthing) if not t}
    ids, found = compute_segments(probs.clone(), scores, labels, mask_threshold=mask_threshold,
                                  overlap_mask_area_threshold=overlap_threshold, label_ids_to_fuse=stuff)
    ids = ids.to(torch.int64)
    # as in Mask2Former (transformers' compute_segments skips this): a pixel joins its winning query's
    # segment only where that query's own mask is confident; elsewhere it stays VOID
    winner = (probs * scores[:, None, None]).argmax(0, keepdim=True)  # (1, H, W)
    ids[probs.gather(0, winner)[0] < mask_threshold] = 0
    if min_area > 0:  # segments smaller than min_area pixels become VOID
        sid, area = torch.unique(ids, return_counts=True)
        for small in sid[(area < min_area) & (sid != 0)].tolist():
            ids[ids == small] = 0
    present = set(torch.unique(ids).tolist())
    segments, seen = [], set()
    for seg in found:  # fused stuff queries repeat their segment: keep the first entry
        sid = int(seg["id"])
        if sid in seen or sid not in present:
            continue
        seen.add(sid)
        label = int(seg["label_id"])
        segments.append({"id": sid, "category_id": label, "isthing": bool(isthing[label]),
                         "score": float(seg["score"])})
    return ids, segments


@torch.no_grad()
def semantic_inference(logits: torch.Tensor, mask_logits: torch.Tensor,
                       size: tuple[int, int]) -> torch.Tensor:
    """``(K, H, W)`` per-class scores; ``argmax(0)`` is the semantic label map."""
    cls = logits.float().softmax(-1)[:, :-1]  # (Q, K)
    return torch.einsum("qk,qhw->khw", cls, upsample_masks(mask_logits, size).sigmoid())


@torch.no_grad()
def instance_inference(logits: torch.Tensor, mask_logits: torch.Tensor, size: tuple[int, int],
                       isthing: Sequence[bool]) -> dict[str, torch.Tensor]:
    """``{"masks": (N, H, W) bool, "labels": (N,), "scores": (N,)}`` for thing classes, best first."""
    q, k1 = logits.shape
    cls = logits.float().softmax(-1)[:, :-1]  # (Q, K)
    things = torch.tensor(list(isthing), dtype=torch.bool, device=cls.device)
    cls = cls.masked_fill(~things[None], 0.0)
    top, flat = cls.flatten().topk(min(q, cls.numel()))
    query, labels = flat // (k1 - 1), flat % (k1 - 1)
    keep = top > 0
    top, query, labels = top[keep], query[keep], labels[keep]
    masks = upsample_masks(mask_logits[query], size)
    binary = masks > 0
    mask_score = (masks.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    scores = top * mask_score
    order = scores.argsort(descending=True)
    return {"masks": binary[order], "labels": labels[order], "scores": scores[order]}
