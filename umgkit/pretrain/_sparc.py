"""SPARC's fine-grained loss: language-grouped patch embeddings contrasted with their own tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._loss_utils import inverse_temperature, zero_loss

__all__ = ["sparc_alignment_weights", "sparc_loss"]


def sparc_alignment_weights(patch_emb: torch.Tensor, token_emb: torch.Tensor,
                            threshold: float | None = None) -> torch.Tensor:
    """``(B, T, P)`` token-to-patch weights, each row summing to 1.

    Per token: similarities to the P patches, min-max normalised over P to [0, 1], zeroed below
    ``threshold`` (default ``1/P``), then divided by their sum (L1; no softmax, so a token attends to a
    sparse, unsharpened set of patches). The best patch always maps to 1, so a row is never all zero;
    a token equally similar to every patch (max == min) gets uniform weights.
    """
    num_patches = patch_emb.shape[1]
    thr = 1.0 / num_patches if threshold is None else float(threshold)
    if not 0.0 <= thr <= 1.0:
        raise ValueError(f"sparc_loss: threshold={threshold} must lie in [0, 1] (it applies to min-max "
                         "normalised similarities); leave it None for SPARC's 1/P.")
    sim = token_emb @ patch_emb.transpose(1, 2)  # (B, T, P)
    low = sim.min(dim=-1, keepdim=True).values
    span = sim.max(dim=-1, keepdim=True).values - low
    flat = span <= torch.finfo(sim.dtype).eps
    norm = (sim - low) / torch.where(flat, torch.ones_like(span), span)
    norm = torch.where(flat, torch.ones_like(sim), norm)
    weights = torch.where(norm >= thr, norm, torch.zeros_like(norm))
    return weights / weights.sum(dim=-1, keepdim=True)


def sparc_loss(patch_emb: torch.Tensor, token_emb: torch.Tensor, token_mask: torch.Tensor,
               logit_scale: torch.Tensor | float, *, threshold: float | None = None) -> torch.Tensor:
    """SPARC fine-grained loss (Bica et al. 2024), per image-caption pair.

    patch_emb (B, P, D) and token_emb (B, T, D) L2-normalised; token_mask (B, T) bool, True for real
    tokens (padding and special tokens False). Grouped embeddings ``e = normalise(W @ patches)`` (B, T, D)
    with W from `sparc_alignment_weights`. Within each sample, with ``s = scale * e @ tokens^T`` over its
    real tokens only: ``l_t = 0.5 * (CE(s[t, :], t) + CE(s[:, t], t))``; the sample's loss is the mean of
    ``l_t`` over its real tokens and the result the mean over samples with at least one real token
    (SPARC's 1/(2B) sum_b 1/L_b sum_t). Padding never enters a logit row, column or mean.
    """
    if patch_emb.dim() != 3 or token_emb.dim() != 3 or patch_emb.shape[0] != token_emb.shape[0] \
            or patch_emb.shape[2] != token_emb.shape[2]:
        raise ValueError(f"sparc_loss: patch_emb {tuple(patch_emb.shape)} and token_emb "
                         f"{tuple(token_emb.shape)} must be (B, P, D) and (B, T, D).")
    if tuple(token_mask.shape) != tuple(token_emb.shape[:2]):
        raise ValueError(f"sparc_loss: token_mask has shape {tuple(token_mask.shape)}, expected "
                         f"{tuple(token_emb.shape[:2])} (True for real tokens).")
    mask = token_mask.to(torch.bool)
    counts = mask.sum(dim=1)  # (B,)
    if patch_emb.shape[1] == 0 or not bool((counts > 0).any()):
        return zero_loss(patch_emb, token_emb, logit_scale)
    weights = sparc_alignment_weights(patch_emb, token_emb, threshold)
    grouped = F.normalize(weights @ patch_emb, dim=-1)  # (B, T, D)
    logits = inverse_temperature(logit_scale) * grouped @ token_emb.transpose(1, 2)  # (B, T grouped, T)
    pair = mask[:, :, None] & mask[:, None, :]
    logits = logits.masked_fill(~pair, torch.finfo(logits.dtype).min)  # padding out of rows and columns
    g2t = -logits.log_softmax(dim=2).diagonal(dim1=1, dim2=2)  # (B, T): grouped e_t -> its token
    t2g = -logits.log_softmax(dim=1).diagonal(dim1=1, dim2=2)  # (B, T): token t -> its grouped e_t
    per_token = torch.where(mask, 0.5 * (g2t + t2g), torch.zeros_like(g2t))
    has = counts > 0
    per_sample = per_token.sum(dim=1)[has] / counts[has].to(per_token.dtype)
    return per_sample.mean()
