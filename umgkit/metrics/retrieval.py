"""Recall@K for image-text retrieval, COCO 5k / Flickr30k 1k protocol (several captions per image).

Inputs are an image-by-caption similarity matrix ``sim`` of shape ``(N, M)`` and ``caption_image``
``(M,)``, the index (row of ``sim``) of the image each caption describes; images may have any number
of captions (5 in the standard protocols).

- image -> text R@K: fraction of images whose best-ranked correct caption is within the top K of all
  M captions;
- text -> image R@K: fraction of captions whose image is within the top K of all N images.

Tie rule (pessimistic, deterministic): a *wrong* candidate scoring exactly the same as the best correct
one is ranked ahead of it. The rank of a positive is the number of wrong candidates scoring ``>=`` it
plus correct ones scoring ``>`` it (none, for the best correct). So a constant similarity scores R@K = 0
instead of an arbitrary sort-order-dependent value; with no ties this is the usual argsort rank.

Values are reported in percent (0-100), as the papers do; ``rsum`` is the sum of the six recalls
(max 600) and ``mean_recall`` their mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["caption_ranks", "image_ranks", "retrieval_metrics"]

_CHUNK = 1024  # rows per block: keeps the (rows, M) comparison masks small for 25k captions


def _check(sim: torch.Tensor, caption_image: torch.Tensor) -> torch.Tensor:
    if sim.dim() != 2:
        raise ValueError(f"retrieval metrics: sim must be (N images, M captions), got {tuple(sim.shape)}.")
    caption_image = torch.as_tensor(caption_image, device=sim.device).long().reshape(-1)
    if caption_image.numel() != sim.shape[1]:
        raise ValueError(f"retrieval metrics: {caption_image.numel()} caption image indices for "
                         f"{sim.shape[1]} captions; give one image index per caption (column of sim).")
    if caption_image.numel() and (caption_image.min() < 0 or caption_image.max() >= sim.shape[0]):
        raise ValueError(f"retrieval metrics: caption image indices must lie in [0, {sim.shape[0]}), got "
                         f"[{int(caption_image.min())}, {int(caption_image.max())}].")
    return caption_image


def caption_ranks(sim: torch.Tensor, caption_image: torch.Tensor) -> torch.Tensor:
    """``(N,)`` 0-based rank of each image's best correct caption (image -> text); images without a
    caption get rank ``M`` (never retrieved)."""
    caption_image = _check(sim, caption_image)
    n, m = sim.shape
    ranks = torch.full((n,), m, dtype=torch.long, device=sim.device)
    for start in range(0, n, _CHUNK):
        rows = torch.arange(start, min(start + _CHUNK, n), device=sim.device)
        block = sim[rows].float()  # (r, M)
        correct = caption_image[None, :] == rows[:, None]  # (r, M)
        best = block.masked_fill(~correct, float("-inf")).amax(dim=1, keepdim=True)  # (r, 1)
        ahead = ((block >= best) & ~correct).sum(dim=1)
        has = correct.any(dim=1)
        ranks[rows[has]] = ahead[has]
    return ranks


def image_ranks(sim: torch.Tensor, caption_image: torch.Tensor) -> torch.Tensor:
    """``(M,)`` 0-based rank of each caption's image among all N images (text -> image)."""
    caption_image = _check(sim, caption_image)
    m = sim.shape[1]
    ranks = torch.empty(m, dtype=torch.long, device=sim.device)
    for start in range(0, m, _CHUNK):
        cols = torch.arange(start, min(start + _CHUNK, m), device=sim.device)
        block = sim[:, cols].float().t()  # (c, N)
        target = caption_image[cols]
        score = block.gather(1, target[:, None])  # (c, 1)
        wrong = torch.ones_like(block, dtype=torch.bool).scatter_(1, target[:, None], False)
        ranks[cols] = ((block >= score) & wrong).sum(dim=1)
    return ranks


def retrieval_metrics(sim: torch.Tensor, caption_image: torch.Tensor,
                      ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """``i2t_R@K``, ``t2i_R@K`` (percent) for each K, plus ``rsum`` and ``mean_recall``.

    Example:
        >>> import torch
        >>> sim = torch.tensor([[0.9, 0.1, 0.8, 0.2], [0.5, 0.6, 0.4, 0.7]])  # 2 images, 4 captions
        >>> m = retrieval_metrics(sim, torch.tensor([0, 0, 1, 1]), ks=(1,))
        >>> m["i2t_R@1"], m["t2i_R@1"]  # captions 1 and 2 rank their image second
        (100.0, 50.0)
    """
    i2t, t2i = caption_ranks(sim, caption_image), image_ranks(sim, caption_image)
    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_R@{k}"] = 100.0 * float((i2t < k).float().mean()) if i2t.numel() else 0.0
    for k in ks:
        out[f"t2i_R@{k}"] = 100.0 * float((t2i < k).float().mean()) if t2i.numel() else 0.0
    values = list(out.values())
    out["rsum"] = float(sum(values))
    out["mean_recall"] = float(sum(values) / len(values)) if values else 0.0
    return out
