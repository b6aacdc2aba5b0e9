"""Cross-process gathering of rows *with* gradients, for contrastive losses; per-process sizes may differ.

`gather_rows` concatenates every process's rows along dim 0: each pads its rows to the largest local
count, ``torch.distributed.nn.functional.all_gather`` (whose backward sums the incoming gradients over
processes and hands each one the slice of its own rows) gathers them and the padding is dropped again.
Local counts may differ and may be 0 (a batch whose every image was skipped): every process still takes
part in every collective, so none waits for one that skipped. Outside a running process group it is the
identity, so the same loss code serves one process and many.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["distributed_ready", "gather_with_grad", "gather_rows", "gather_rows_nograd", "process_share"]


def distributed_ready() -> bool:
    """True when a default process group is initialised and holds more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


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


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(rows of all processes in rank order, this process's row offset)``; see `gather_rows`."""
    rows, offset, _ = gather_rows(x)
    return rows, offset


def gather_rows_nograd(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenated rows of all processes for a tensor needing no gradient (ids), given the sizes."""
    if not distributed_ready():
        return x
    parts = [x.new_zeros((max(sizes),) + tuple(x.shape[1:])) for _ in sizes]
    dist.all_gather(parts, _pad(x, max(sizes)))
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)], dim=0)


def process_share(rows: int, device: torch.device) -> float:
    """``rows * processes / all rows``: the weight that turns a per-process mean over ``rows`` into this
    process's part of the mean over every process's rows, once DDP averages over processes (0 for a
    process with no rows; 1 outside a process group). Every process must call it (a collective)."""
    if not distributed_ready():
        return 1.0
    total = torch.tensor([rows], dtype=torch.long, device=device)
    dist.all_reduce(total)
    return rows * dist.get_world_size() / int(total) if int(total) else 0.0
