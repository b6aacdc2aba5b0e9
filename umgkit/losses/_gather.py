"""Cross-process gathering of embeddings *with* gradients, for contrastive losses.

`gather_with_grad` concatenates every process's rows along dim 0 using
``torch.distributed.nn.functional.all_gather``, whose backward sums the incoming gradients over
processes and hands each one the slice of its own rows, so negatives from other processes shape the
gradient of the local encoder. Outside a running process group it is the identity (offset 0), so the
same loss code serves one process and many.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["distributed_ready", "gather_with_grad"]


def distributed_ready() -> bool:
    """True when a default process group is initialised and holds more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(W * B, ...)`` rows of all ``W`` processes in rank order, and this process's row offset.

    Every process must pass the same local batch size ``B`` (the trainer's ``drop_last`` loaders
    guarantee it); a mismatch raises rather than mislabelling positives.
    """
    if not distributed_ready():
        return x, 0
    from torch.distributed.nn.functional import all_gather

    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.long, device=x.device))
    if len({int(s) for s in sizes}) != 1:
        raise ValueError(f"gather_with_grad: local batch sizes differ across processes "
                         f"({[int(s) for s in sizes]}); use equal per-process batches (drop_last=True).")
    parts = all_gather(x.contiguous())
    return torch.cat(parts, dim=0), dist.get_rank() * x.shape[0]
