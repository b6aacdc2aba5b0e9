"""Cross-process gathering of a *variable* number of rows (regions per process differ), with gradients.

`umgkit.losses.gather_with_grad` needs equal local batch sizes, which image batches have but region
batches do not: each process holds however many boxes its images carry. Here every process pads its rows
to the largest local count, gathers with ``torch.distributed.nn.functional.all_gather`` (whose backward
hands each process the summed gradient of its own rows) and drops the padding again. Outside a running
process group it is the identity.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from umgkit.losses import distributed_ready

__all__ = ["gather_rows", "gather_rows_nograd"]


def _sizes(n: int, device: torch.device) -> list[int]:
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([n], dtype=torch.long, device=device))
    return [int(s) for s in sizes]


def _pad(x: torch.Tensor, rows: int) -> torch.Tensor:
    if x.shape[0] == rows:
        return x.contiguous()
    return torch.cat([x, x.new_zeros((rows - x.shape[0],) + tuple(x.shape[1:]))], dim=0)


def gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, int, list[int]]:
    """``(all rows (sum(sizes), ...), this process's row offset, per-process sizes)``; differentiable.

    Every process must call it (also with zero rows), as it runs collectives.
    """
    if not distributed_ready():
        return x, 0, [x.shape[0]]
    from torch.distributed.nn.functional import all_gather

    sizes = _sizes(x.shape[0], x.device)
    parts = all_gather(_pad(x, max(sizes)))
    rows = torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)], dim=0)
    return rows, sum(sizes[:dist.get_rank()]), sizes


def gather_rows_nograd(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenated rows of all processes for a tensor needing no gradient (ids), given the sizes."""
    if not distributed_ready():
        return x
    parts = [x.new_zeros((max(sizes),) + tuple(x.shape[1:])) for _ in sizes]
    dist.all_gather(parts, _pad(x, max(sizes)))
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)], dim=0)
