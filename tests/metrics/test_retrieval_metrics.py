"""Recall@K on hand-built similarity matrices (5 captions per image, COCO / Flickr protocol)."""

import pytest
import torch

from umgkit.metrics.retrieval import caption_ranks, image_ranks, retrieval_metrics

OWNERS = torch.arange(3).repeat_interleave(5)  # 3 images x 5 captions: caption c describes image c // 5


def _sim() -> torch.Tensor:
    """(3 images, 15 captions) with hand-placed scores; comments give the expected ranks."""
    sim = torch.zeros(3, 15)
    # image 0: its captions score 0.1..0.5, one wrong caption (image 1's #5) scores 0.9 -> rank 1
    sim[0, 0:5] = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    sim[0, 5] = 0.9
    # image 1: its caption #7 scores 0.95, best overall -> rank 0
    sim[1, 5:10] = torch.tensor([0.3, 0.2, 0.95, 0.1, 0.0])
    # image 2: all its captions -0.5; every other caption scores 0.0 -> rank 10 (none in top 10)
    sim[2, 10:15] = -0.5
    return sim


def test_i2t_ranks_by_best_correct_caption():
    assert caption_ranks(_sim(), OWNERS).tolist() == [1, 0, 10]


def test_t2i_ranks_per_caption():
    sim = _sim()
    ranks = image_ranks(sim, OWNERS)
    # caption 0..4 (image 0): image 0 scores 0.1..0.5 vs 0 for images 1, 2 -> rank 0 each
    assert ranks[:5].tolist() == [0] * 5
    # caption 5 (image 1): image 0 scores 0.9 > 0.3 -> rank 1; captions 6..8 rank 0 (image 0 has 0,
    # image 2 has 0 < positive); caption 9 scores 0.0 for image 1 and ties with images 0, 2 -> rank 2
    assert ranks[5:10].tolist() == [1, 0, 0, 0, 2]
    # captions of image 2 score -0.5 for it and 0 for the others -> rank 2
    assert ranks[10:].tolist() == [2] * 5


def test_recall_values_in_percent():
    m = retrieval_metrics(_sim(), OWNERS)
    assert m["i2t_R@1"] == pytest.approx(100 / 3)  # only image 1
    assert m["i2t_R@5"] == pytest.approx(200 / 3) and m["i2t_R@10"] == pytest.approx(200 / 3)
    assert m["t2i_R@1"] == pytest.approx(100 * 8 / 15)  # captions 0-4 and 6-8
    assert m["t2i_R@5"] == pytest.approx(100.0) and m["t2i_R@10"] == pytest.approx(100.0)
    six = [m[f"{d}_R@{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)]
    assert m["rsum"] == pytest.approx(sum(six))
    assert m["mean_recall"] == pytest.approx(sum(six) / 6)


def test_perfect_and_constant_similarity():
    perfect = (OWNERS[None, :] == torch.arange(3)[:, None]).float()
    m = retrieval_metrics(perfect, OWNERS)
    assert m["i2t_R@1"] == 100.0 and m["t2i_R@1"] == 100.0 and m["rsum"] == 600.0
    # ties are broken against the query: a constant matrix retrieves nothing at K=1
    m = retrieval_metrics(torch.ones(3, 15), OWNERS, ks=(1, 2, 3))
    assert m["i2t_R@1"] == 0.0 and m["t2i_R@1"] == 0.0
    assert m["t2i_R@3"] == 100.0  # rank 2 = both other images ahead


def test_variable_captions_per_image():
    owners = torch.tensor([0, 0, 0, 1])  # image 0 has three captions, image 1 one
    sim = torch.tensor([[0.1, 0.9, 0.2, 0.5], [0.5, 0.6, 0.7, 0.4]])
    assert caption_ranks(sim, owners).tolist() == [0, 3]  # image 1: its caption is last of four
    assert image_ranks(sim, owners).tolist() == [1, 0, 1, 1]


def test_bad_caption_indices_raise():
    with pytest.raises(ValueError, match="one image index per caption"):
        retrieval_metrics(torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        retrieval_metrics(torch.zeros(2, 2), torch.tensor([0, 2]))
