"""AdamW over the trainable parameters and the warmup + cosine learning-rate schedule.

Only parameters with ``requires_grad`` reach the optimizer, so a frozen backbone costs no optimizer
memory. Weight decay follows parameter rank (as nanoGPT does): matrices and kernels (>= 2-D) are
decayed; biases, norm scales and other 1-D vectors are not, because shrinking them towards zero
changes what the layer computes rather than regularising it. A model may also name parameters to
exclude (timm's ``no_weight_decay()`` convention, e.g. prompt or position tokens).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["param_groups", "build_optimizer", "warmup_cosine", "build_scheduler"]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: ``[decayed >=2-D weights, undecayed rest]``; each carries ``"names"``.

    Raises ``ValueError`` when nothing is trainable (a config whose adapter froze everything).
    """
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = {"names": [], "params": []}, {"names": [], "params": []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = decay if param.ndim >= 2 and name not in skip else no_decay
        group["names"].append(name)
        group["params"].append(param)
    if not decay["params"] and not no_decay["params"]:
        raise ValueError("the model has no trainable parameters (every parameter has requires_grad=False); "
                         "choose an adapter that adds trainable weights or a head to train.")
    decay["weight_decay"] = weight_decay
    no_decay["weight_decay"] = 0.0
    return [decay, no_decay]


def build_optimizer(model: nn.Module, *, lr: float, weight_decay: float,
                    betas: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW over `param_groups`; the ``"names"`` entries stay in the groups for inspection."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=tuple(betas))


def warmup_cosine(step: int, *, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Learning-rate factor for optimizer step ``step`` (0-based: the factor the ``step``-th update uses).

    Warmup is linear, ``(step + 1) / warmup_steps``, so the first update already moves the weights and
    update ``warmup_steps - 1`` uses the full rate. After warmup the factor follows a half cosine from
    1 to ``min_lr_ratio``, reaching it at ``step == total_steps`` (just past the last update, as in
    Hugging Face's schedule), so no update is wasted at exactly the minimum.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int,
                    min_lr_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """`warmup_cosine` as a ``LambdaLR``; call ``.step()`` once per optimizer update.

    Deliberately not passed through ``accelerator.prepare``: Accelerate's scheduler wrapper advances
    ``num_processes`` times per call, which would make the curve depend on the process count.
    """

    def factor(step: int) -> float:
        return warmup_cosine(step, total_steps=total_steps, warmup_steps=warmup_steps,
                             min_lr_ratio=min_lr_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
