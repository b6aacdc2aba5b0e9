"""Patch-token reduction for pretraining: similarity clustering (UMG-CLIP's 75% reduction) and random keep.

Pure tensor ops, batched over B with no Python loop over samples. Pass patch tokens only (no class
token). `cluster_merge` keeps every image area represented: each input token belongs to exactly one
merged token, and `unmerge` spreads the merged tokens back onto the full grid for dense maps and
RoIAlign. `random_keep` is the MAE/FLIP-style random masking baseline.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["cluster_merge", "keep_count", "random_keep", "unmerge"]


def keep_count(num_tokens: int, keep_ratio: float) -> int:
    """Tokens kept out of ``num_tokens``: ``round(num_tokens * keep_ratio)`` (halves up), at least 1.

    Example:
        >>> keep_count(196, 0.25)
        49
    """
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_count: keep_ratio={keep_ratio} must lie in (0, 1] (0.25 keeps a quarter).")
    if num_tokens < 1:
        raise ValueError(f"keep_count: num_tokens={num_tokens} must be positive.")
    return max(1, min(num_tokens, math.floor(num_tokens * keep_ratio + 0.5)))


def _check(tokens: torch.Tensor, keep: int, name: str) -> None:
    if tokens.dim() != 3:
        raise ValueError(f"{name}: tokens must be (B, N, C), got {tuple(tokens.shape)}.")
    if not 1 <= keep <= tokens.shape[1]:
        raise ValueError(f"{name}: keep={keep} must lie in [1, {tokens.shape[1]}] (N tokens); "
                         "use keep_count(N, ratio).")


def _segment_mean(tokens: torch.Tensor, assign: torch.Tensor, m: int) -> torch.Tensor:
    """(B, M, C) mean of the tokens of each cluster, as a one-hot matmul (deterministic on GPU too)."""
    onehot = F.one_hot(assign, m).to(tokens.dtype).transpose(1, 2)  # (B, M, N)
    counts = onehot.sum(dim=2, keepdim=True).clamp(min=1)
    return (onehot @ tokens) / counts


def _sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, N, M) squared Euclidean distances as one batched matmul (cheaper than cdist's padded path)."""
    d = torch.baddbmm((b * b).sum(dim=2)[:, None, :], a, b.transpose(1, 2), alpha=-2.0)
    return (d + (a * a).sum(dim=2)[:, :, None]).clamp(min=0.0)


def _density_peaks(x: torch.Tensor, keep: int, neighbours: int) -> torch.Tensor:
    """(B, M) sorted indices of the cluster seeds, by DPC-kNN (density peaks with a kNN density).

    density rho_i = exp(-mean squared distance to the k nearest tokens), distances measured in units of
    the sample's mean squared distance (features of any scale behave alike); delta_i = distance to the nearest
    denser token (ties broken by index, so the order is total and the result deterministic); seeds are the
    ``keep`` tokens with the largest rho * delta: dense and far from anything denser.
    """
    n = x.shape[1]
    sq = _sq_dist(x, x)  # (B, N, N)
    sq = sq / sq.mean(dim=(1, 2), keepdim=True).clamp(min=1e-12)  # scale-free, so rho cannot underflow
    near = sq.topk(min(neighbours + 1, n), dim=2, largest=False).values  # includes the token itself
    rho = (-near.mean(dim=2)).exp()  # (B, N)
    dist = sq.sqrt()
    idx = torch.arange(n, device=x.device)
    other, own = rho[:, None, :], rho[:, :, None]  # denser[b, i, j]: token j is denser than token i
    denser = (other > own) | ((other == own) & (idx[None, :] < idx[:, None]))
    delta = dist.masked_fill(~denser, float("inf")).min(dim=2).values
    delta = torch.where(denser.any(dim=2), delta, dist.max(dim=2).values)
    order = torch.sort(rho * delta, dim=1, descending=True, stable=True).indices
    return order[:, :keep].sort(dim=1).values


def cluster_merge(tokens: torch.Tensor, keep: int, *, iters: int = 2,
                  neighbours: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge (B, N, C) tokens into ``keep`` clusters by feature similarity.

    Returns ``(merged (B, M, C), assign (B, N) int64 in [0, M))`` with M = ``keep``. Seeds come from
    `_density_peaks` (deterministic, no random init); then ``iters`` k-means rounds (assign each token
    to the nearest centre in Euclidean distance, recompute centres as means). Each seed token stays in its
    own cluster, so no cluster is ever empty. Clustering runs on detached float32 features; ``merged`` is
    the plain mean of each cluster's member tokens, differentiable with respect to ``tokens``. Merged
    tokens are ordered by their seed's position. Cost: O(N^2 C + iters N M C) per image, small next to
    a ViT block (about 12 N C^2).
    """
    _check(tokens, keep, "cluster_merge")
    b, n, _ = tokens.shape
    if keep == n:
        return tokens, torch.arange(n, device=tokens.device).expand(b, n).clone()
    x = tokens.detach().float()
    seeds = _density_peaks(x, keep, neighbours)  # (B, M)
    centres = x.gather(1, seeds[:, :, None].expand(-1, -1, x.shape[2]))  # (B, M, C)
    own = torch.arange(keep, device=tokens.device).expand(b, keep)
    for step in range(iters + 1):
        assign = _sq_dist(x, centres).argmin(dim=2)  # (B, N); ties go to the first centre
        assign = assign.scatter(1, seeds, own)
        if step < iters:
            centres = _segment_mean(x, assign, keep)
    return _segment_mean(tokens, assign, keep), assign


def random_keep(tokens: torch.Tensor, keep: int, *,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep ``keep`` random tokens per sample: ``(kept (B, M, C), index (B, M) int64)``.

    ``index`` holds distinct positions in increasing order (kept tokens stay in raster order). A
    ``generator`` makes it reproducible; it may live on the CPU while tokens are on a GPU.
    """
    _check(tokens, keep, "random_keep")
    b, n, c = tokens.shape
    device = generator.device if generator is not None else tokens.device
    noise = torch.rand(b, n, generator=generator, device=device).to(tokens.device)
    index = noise.argsort(dim=1)[:, :keep].sort(dim=1).values
    return tokens.gather(1, index[:, :, None].expand(-1, -1, c)), index


def unmerge(merged: torch.Tensor, assign: torch.Tensor) -> torch.Tensor:
    """(B, M, C), (B, N) -> (B, N, C): every original position takes its cluster's merged token."""
    if merged.dim() != 3 or assign.dim() != 2 or assign.shape[0] != merged.shape[0]:
        raise ValueError(f"unmerge: merged {tuple(merged.shape)} and assign {tuple(assign.shape)} must be "
                         "(B, M, C) and (B, N), as cluster_merge returns them.")
    return merged.gather(1, assign[:, :, None].expand(-1, -1, merged.shape[2]))
