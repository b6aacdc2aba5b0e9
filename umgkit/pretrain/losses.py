"""Multi-granularity pretraining losses: image-text, region-text (+ tags), SPARC tokens, MGCA-style pixels.

Shared conventions: embeddings are L2-normalised along their last (feature) dimension; ``logit_scale``
is the *log* inverse temperature, exponentiated after clamping at ``ln 100`` exactly as
`umgkit.losses.clip_loss` does; every loss returns a differentiable scalar (a mean over its terms), and
an input with nothing to contrast gives ``0 * input.sum()`` so that every process still joins backward.

Distributed runs: a gathered loss is scaled so that the *mean over processes* of the returned values
equals the single-process loss on the concatenated batch; since DDP averages gradients over processes,
the update equals the single-process one too (tested with two gloo processes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from umgkit.losses import clip_loss, distributed_ready

from ..losses import gather_rows, gather_rows_nograd
from ._loss_utils import inverse_temperature, multi_positive_ce, zero_loss
from ._pixel import pixel_alignment_loss
from ._sparc import sparc_loss

__all__ = ["caption_hash_ids", "image_text_loss", "pixel_alignment_loss", "region_tag_loss",
           "region_text_loss", "sparc_loss"]


def image_text_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float, *,
                    gather: bool = True) -> torch.Tensor:
    """Symmetric image-text InfoNCE; ``(B, D)`` rows pair up. With ``gather`` and a process group, the
    negatives are the texts/images of every process, gathered with gradients (see `umgkit.losses.clip_loss`).
    Every process must hold the same ``B``.
    """
    if image_emb.shape[0] == 0 and not (gather and distributed_ready()):
        return zero_loss(image_emb, text_emb, logit_scale)
    return clip_loss(image_emb, text_emb, logit_scale, gather=gather)


def caption_hash_ids(captions: Sequence[str]) -> torch.Tensor:
    """``(K,)`` int64 ids equal exactly for equal caption strings, the same on every process and run.

    Use these as ``caption_ids`` of `region_text_loss` when gathering: per-batch indices would not agree
    across processes. The id is the first 8 bytes of a BLAKE2b digest (collisions ~ K^2 / 2^64).
    """
    ids = [int.from_bytes(hashlib.blake2b(c.encode("utf-8"), digest_size=8).digest(), "little", signed=True)
           for c in captions]
    return torch.tensor(ids, dtype=torch.long)


def region_text_loss(region_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float, *,
                     caption_ids: torch.Tensor | None = None, describes: torch.Tensor | None = None,
                     gather: bool = False) -> torch.Tensor:
    """Symmetric region-caption InfoNCE with multi-positive targets.

    region_emb (K, D) box-pooled region embeddings; text_emb (K, D) their captions' embeddings; the
    negatives of a region are all K captions of the batch (of every process with ``gather``; processes
    may hold different K, including 0). ``caption_ids`` (K,) int64: rows with equal ids are positives of
    each other (identical captions such as "a red circle" are not false negatives): each positive is
    contrasted with the negatives only (`_loss_utils.multi_positive_ce`). Without ids every row is its
    own class. When gathering, ids must agree across processes: use `caption_hash_ids`. (With identical
    embeddings for identical captions, plain InfoNCE would cap each duplicate's probability at 1/n.)
    ``describes`` (K, A) int64, with ``caption_ids``: the ids of every caption that is true of region k
    (its alternatives, e.g. "a red circle" and "a circle"; pad a row by repeating one of its ids; it must
    hold the region's own id). Caption j is then a positive of region i whenever it describes region i,
    so a region drawn as "a red circle" is not a negative of the text "a circle" of another red circle.

    Value: ``0.5 * (mean_i l(region_i -> captions) + mean_j l(caption_j -> regions))`` over the K rows
    (the global K when gathering; the local sum is divided by ``K_global / world_size`` so the process mean
    is that value).
    """
    if region_emb.shape != text_emb.shape or region_emb.dim() != 2:
        raise ValueError(f"region_text_loss: region_emb {tuple(region_emb.shape)} and text_emb "
                         f"{tuple(text_emb.shape)} must both be (K, D) with matching rows.")
    k = region_emb.shape[0]
    if caption_ids is not None and tuple(caption_ids.shape) != (k,):
        raise ValueError(f"region_text_loss: caption_ids has shape {tuple(caption_ids.shape)}, "
                         f"expected ({k},) (one id per region caption).")
    if describes is not None:
        _check_describes(describes, caption_ids, k)
    if gather:
        all_regions, offset, sizes = gather_rows(region_emb)
        all_texts, _, _ = gather_rows(text_emb)
    else:
        all_regions, all_texts, offset, sizes = region_emb, text_emb, 0, [k]
    total = sum(sizes)
    if caption_ids is None:
        ids = torch.arange(k, device=region_emb.device) + offset
        all_ids = torch.arange(total, device=region_emb.device)
    else:  # every process joins this collective, also one holding no region
        ids = caption_ids.to(region_emb.device, torch.long)
        all_ids = gather_rows_nograd(ids, sizes) if gather else ids
    if describes is not None:  # every process joins these collectives too
        describes = describes.to(region_emb.device, torch.long)
        all_describes = gather_rows_nograd(_widen(describes, gather), sizes) if gather else describes
    if total == 0 or k == 0:  # keep the gathered tensors in the graph: their backward is a collective
        return zero_loss(all_regions, all_texts, region_emb, text_emb, logit_scale)
    if describes is None:
        r2t_pos = t2r_pos = ids[:, None] == all_ids[None, :]  # (K, K_global)
    else:  # region i -> caption j: j's id among i's; caption i -> region j: i's id among j's
        r2t_pos = (describes[:, :, None] == all_ids[None, None, :]).any(dim=1)
        t2r_pos = (ids[:, None, None] == all_describes[None, :, :]).any(dim=2)
    scale = inverse_temperature(logit_scale)
    r2t = multi_positive_ce(scale * region_emb @ all_texts.t(), r2t_pos)
    t2r = multi_positive_ce(scale * text_emb @ all_regions.t(), t2r_pos)
    return 0.5 * (r2t.sum() + t2r.sum()) * (len(sizes) / total)


def _check_describes(describes: torch.Tensor, caption_ids: torch.Tensor | None, k: int) -> None:
    if caption_ids is None:
        raise ValueError("region_text_loss: describes needs caption_ids (the id of each region's caption).")
    if describes.dim() != 2 or describes.shape[0] != k or describes.shape[1] == 0:
        raise ValueError(f"region_text_loss: describes has shape {tuple(describes.shape)}, expected ({k}, A) "
                         "with A >= 1 (the ids of every caption true of each region).")
    ids = caption_ids.to(describes.device)
    if k and not bool((describes == ids[:, None]).any(dim=1).all()):
        raise ValueError("region_text_loss: every row of describes must hold that region's own caption id.")


def _widen(describes: torch.Tensor, gather: bool) -> torch.Tensor:
    """Pad rows to the widest A over processes (repeating column 0), so they can be gathered."""
    if not (gather and distributed_ready()):
        return describes
    import torch.distributed as dist

    width = torch.tensor([describes.shape[1]], device=describes.device)
    dist.all_reduce(width, op=dist.ReduceOp.MAX)
    extra = int(width) - describes.shape[1]
    return describes if extra == 0 else torch.cat([describes, describes[:, :1].expand(-1, extra)], dim=1)


def region_tag_loss(region_emb: torch.Tensor, tag_text_emb: torch.Tensor, tag_targets: torch.Tensor,
                    logit_scale: torch.Tensor | float, *, margin: float = 0.0) -> torch.Tensor:
    """Multi-label tag loss: mean binary cross-entropy of ``scale * (cos(region_k, tag_t) - margin)``.

    region_emb (K, D); tag_text_emb (T, D) embeddings of the tag names; tag_targets (K, T) in {0, 1}.
    Scale/bias choice: the logits reuse the contrastive inverse temperature (no extra parameter), and the
    bias is ``-scale * margin`` so the decision boundary sits at a fixed cosine, ``margin`` (default 0:
    a tag counts as present when its embedding points the region's way), whatever the temperature is.
    The mean runs over all K*T entries.
    """
    if region_emb.dim() != 2 or tag_text_emb.dim() != 2 or region_emb.shape[1] != tag_text_emb.shape[1]:
        raise ValueError(f"region_tag_loss: region_emb {tuple(region_emb.shape)} and tag_text_emb "
                         f"{tuple(tag_text_emb.shape)} must be (K, D) and (T, D) with the same D.")
    shape = (region_emb.shape[0], tag_text_emb.shape[0])
    if tuple(tag_targets.shape) != shape:
        raise ValueError(f"region_tag_loss: tag_targets has shape {tuple(tag_targets.shape)}, "
                         f"expected {shape} (regions x tags, 1 where the region carries the tag).")
    if region_emb.shape[0] == 0 or tag_text_emb.shape[0] == 0:
        return zero_loss(region_emb, tag_text_emb, logit_scale)
    targets = tag_targets.to(region_emb.dtype)
    if bool(((targets != 0) & (targets != 1)).any()):
        raise ValueError("region_tag_loss: tag_targets must hold only 0 and 1 (multi-hot rows per region).")
    logits = inverse_temperature(logit_scale) * (region_emb @ tag_text_emb.t() - margin)  # (K, T)
    return F.binary_cross_entropy_with_logits(logits, targets)
