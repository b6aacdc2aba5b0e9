"""Token reduction: keep counts, cluster_merge partition and means, unmerge round trip, random_keep."""

import pytest
import torch

from umgkit.pretrain.token_reduction import cluster_merge, keep_count, random_keep, unmerge


def test_keep_count():
    assert keep_count(196, 0.25) == 49
    assert keep_count(10, 0.25) == 3  # 2.5 rounds half up
    assert keep_count(3, 0.1) == 1  # at least one token
    assert keep_count(7, 1.0) == 7
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="keep_ratio"):
            keep_count(196, bad)


def _blobs(b=2, per=6, c=8, seed=0):
    """Three well separated clusters per sample, tokens interleaved over the sequence; (x, true labels)."""
    g = torch.Generator().manual_seed(seed)
    centres = 10.0 * torch.eye(3, c)  # pairwise distance ~14
    labels = torch.arange(3 * per) % 3  # 0,1,2,0,1,2,...
    x = centres[labels][None].repeat(b, 1, 1) + 0.1 * torch.randn(b, 3 * per, c, generator=g)
    return x, labels


def test_shapes_every_token_assigned_and_no_empty_cluster():
    x = torch.randn(3, 50, 16, generator=torch.Generator().manual_seed(1))
    merged, assign = cluster_merge(x, 12)
    assert merged.shape == (3, 12, 16) and assign.shape == (3, 50) and assign.dtype == torch.long
    assert int(assign.min()) >= 0 and int(assign.max()) < 12
    for b in range(3):
        assert (torch.bincount(assign[b], minlength=12) > 0).all()


def test_merged_token_is_mean_of_members_and_differentiable():
    x = torch.randn(2, 30, 5, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    merged, assign = cluster_merge(x, 7)
    for b in range(2):
        for m in range(7):
            torch.testing.assert_close(merged[b, m], x[b, assign[b] == m].mean(dim=0))
    merged.sum().backward()
    counts = torch.stack([torch.bincount(assign[b], minlength=7) for b in range(2)])  # (B, M)
    expected = 1.0 / counts.gather(1, assign).float()  # d sum(merged) / d x = 1 / cluster size
    torch.testing.assert_close(x.grad, expected[:, :, None].expand_as(x))


def test_separated_clusters_are_recovered():
    x, labels = _blobs()
    _, assign = cluster_merge(x, 3)
    for b in range(2):
        same_true = labels[:, None] == labels[None, :]
        same_found = assign[b][:, None] == assign[b][None, :]
        assert torch.equal(same_true, same_found)


def test_unmerge_round_trip():
    x = torch.randn(2, 20, 4, generator=torch.Generator().manual_seed(3))
    merged, assign = cluster_merge(x, 5)
    full = unmerge(merged, assign)
    assert full.shape == x.shape
    for b in range(2):
        torch.testing.assert_close(full[b], merged[b, assign[b]])
    # tokens constant within clusters come back exactly
    base = 5.0 * torch.randn(4, 6, generator=torch.Generator().manual_seed(4))
    piecewise = base[torch.tensor([0, 1, 2, 3, 3, 2, 1, 0, 0, 1])][None]
    merged, assign = cluster_merge(piecewise, 4)
    torch.testing.assert_close(unmerge(merged, assign), piecewise)


def test_cluster_merge_is_deterministic_and_identity_when_keeping_all():
    x = torch.randn(2, 40, 8, generator=torch.Generator().manual_seed(5))
    m1, a1 = cluster_merge(x, 10)
    m2, a2 = cluster_merge(x.clone(), 10)
    assert torch.equal(a1, a2) and torch.equal(m1, m2)
    merged, assign = cluster_merge(x, 40)
    assert torch.equal(merged, x) and torch.equal(assign[0], torch.arange(40))
    # identical tokens (no structure at all) still give non-empty clusters
    _, assign = cluster_merge(torch.ones(1, 9, 3), 3)
    assert (torch.bincount(assign[0], minlength=3) > 0).all()


def test_random_keep_sorted_unique_and_reproducible():
    x = torch.randn(4, 20, 3, generator=torch.Generator().manual_seed(6))
    kept, index = random_keep(x, 5, generator=torch.Generator().manual_seed(0))
    assert kept.shape == (4, 5, 3) and index.shape == (4, 5) and index.dtype == torch.long
    assert (index[:, 1:] > index[:, :-1]).all()  # strictly increasing: sorted and unique
    assert int(index.min()) >= 0 and int(index.max()) < 20
    torch.testing.assert_close(kept, torch.stack([x[b, index[b]] for b in range(4)]))
    _, again = random_keep(x, 5, generator=torch.Generator().manual_seed(0))
    _, other = random_keep(x, 5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(index, again) and not torch.equal(index, other)


def test_bad_keep_raises():
    x = torch.randn(1, 4, 2)
    for fn in (cluster_merge, random_keep):
        for keep in (0, 5):
            with pytest.raises(ValueError, match="keep="):
                fn(x, keep)
