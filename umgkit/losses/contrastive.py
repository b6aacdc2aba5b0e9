"""Symmetric image-text InfoNCE (CLIP / ALIGN) with a learnable temperature and cross-process negatives.

Conventions: ``image_emb`` and ``text_emb`` are ``(B, D)`` L2-normalised embeddings whose row ``i``
forms a positive pair; ``logit_scale`` is the *log* of the inverse temperature (a learnable scalar,
CLIP's ``ln(1/0.07)`` init), exponentiated here after clamping at ``ln(100)`` so the temperature
cannot collapse below 0.01 (CLIP clamps the parameter after each step; clamping inside the forward
gives the same bound with no optimizer hook, and a zero gradient while at the bound).

Distributed: each process scores its own rows against the columns of *all* processes (gathered
with gradients, see `umgkit.losses._gather`; per-process row counts may differ), labels its rows with
its row offset, and divides its summed loss by the mean rows per process. The mean of the per-process
losses is the single-process loss on the concatenated batch; as DDP averages parameter gradients over
processes, the update equals the single-process one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._gather import gather_rows

__all__ = ["MAX_LOGIT_SCALE", "clip_logits", "clip_loss"]

MAX_LOGIT_SCALE = math.log(100.0)  # temperature >= 0.01, as in CLIP


def _scale(logit_scale: torch.Tensor | float) -> torch.Tensor | float:
    if isinstance(logit_scale, torch.Tensor):
        return logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
    return math.exp(min(float(logit_scale), MAX_LOGIT_SCALE))


def clip_logits(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float,
                gather: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logits_per_image (B, W*B), logits_per_text (B, W*B), labels (B,))`` for the local rows.

    Columns span the global batch when ``gather`` and a process group of ``W`` processes are active.
    """
    logits_per_image, logits_per_text, labels, _ = _local_logits(image_emb, text_emb, logit_scale, gather)
    return logits_per_image, logits_per_text, labels


def _local_logits(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float,
                  gather: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """`clip_logits` plus the mean number of rows per process (the loss's normaliser)."""
    if image_emb.shape != text_emb.shape or image_emb.dim() != 2:
        raise ValueError(f"clip_loss: image_emb {tuple(image_emb.shape)} and text_emb "
                         f"{tuple(text_emb.shape)} must both be (B, D) with matching rows.")
    if gather:
        all_images, offset, sizes = gather_rows(image_emb)
        all_texts, _, _ = gather_rows(text_emb)
    else:
        all_images, all_texts, offset, sizes = image_emb, text_emb, 0, [image_emb.shape[0]]
    scale = _scale(logit_scale)
    logits_per_image = scale * image_emb @ all_texts.t()  # (B, sum of B over processes)
    logits_per_text = scale * text_emb @ all_images.t()
    labels = torch.arange(image_emb.shape[0], device=image_emb.device) + offset
    return logits_per_image, logits_per_text, labels, sum(sizes) / len(sizes)


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float,
              gather: bool = True) -> torch.Tensor:
    """Scalar: mean of the image->text and text->image cross-entropies over the local rows.

    Across processes the local sum is divided by the *mean* rows per process, so with any split of the
    global batch (equal or not, a process may hold none) the mean of the per-process losses, and the
    gradients DDP averages, equal the single-process loss on the whole batch.

    Example:
        >>> import torch, torch.nn.functional as F
        >>> x = F.normalize(torch.eye(3), dim=1)
        >>> round(float(clip_loss(x, x, 0.0)), 4)  # scale 1: -log(e / (e + 2))
        0.5514
    """
    logits_per_image, logits_per_text, labels, mean_rows = _local_logits(image_emb, text_emb, logit_scale,
                                                                          gather)
    total = (F.cross_entropy(logits_per_image, labels, reduction="sum")
             + F.cross_entropy(logits_per_text, labels, reduction="sum"))
    return 0.5 * total / max(mean_rows, 1.0)
