"""Small pieces shared by the pretraining losses: temperature, multi-positive cross-entropy, empty loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from umgkit.losses import MAX_LOGIT_SCALE

__all__ = ["inverse_temperature", "multi_positive_ce", "zero_loss"]


def inverse_temperature(logit_scale: torch.Tensor | float) -> torch.Tensor | float:
    """``exp(min(logit_scale, ln 100))``: `umgkit.losses.clip_loss`'s clamp (temperature >= 0.01)."""
    if isinstance(logit_scale, torch.Tensor):
        return logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
    return math.exp(min(float(logit_scale), MAX_LOGIT_SCALE))


def multi_positive_ce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Per-row InfoNCE with several positives, none of which is a negative of another.

    logits (R, C) float; positives (R, C) bool, at least one True per row. Row loss = mean over its
    positives j of ``-log(exp(l_j) / (exp(l_j) + sum_{n not positive} exp(l_n)))``: every positive is
    contrasted with the negatives only, so two regions captioned "a red circle" never push each other
    away. With one positive per row it is the ordinary cross-entropy. Entries the caller rules out should
    be filled with ``finfo.min`` (they then weigh nothing).
    """
    low = torch.finfo(logits.dtype).min
    neg_lse = logits.masked_fill(positives, low).logsumexp(dim=1, keepdim=True)  # (R, 1)
    per_pos = F.softplus(neg_lse - logits)  # = -log(e^l_j / (e^l_j + e^neg_lse))
    per_pos = torch.where(positives, per_pos, torch.zeros_like(per_pos))
    return per_pos.sum(dim=1) / positives.sum(dim=1).to(logits.dtype)  # (R,)


def zero_loss(*tensors: torch.Tensor) -> torch.Tensor:
    """A zero scalar connected to every input, so a process with nothing to contrast still joins backward."""
    total = tensors[0].sum() * 0.0
    for t in tensors[1:]:
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            total = total + t.sum() * 0.0
    return total
