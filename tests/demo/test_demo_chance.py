"""Chance levels the demo report compares against, on cases small enough to count by hand."""

import numpy as np
import pytest

from umgkit.demo.chance import classification_chance, retrieval_chance, segmentation_chance


def test_classification_chance_is_one_over_classes():
    assert classification_chance(8) == pytest.approx(12.5)


def test_retrieval_chance_two_images_one_caption():
    # R@1 both ways is 1/2; R@5 and R@10 cover both candidates
    assert retrieval_chance(2, 1) == pytest.approx(100 * (0.5 + 1 + 1) / 3)


def test_retrieval_chance_counts_any_of_the_captions():
    # 2 images x 2 captions, image->text R@1: 2 of 4 captions are positives -> 1/2; R@2: 1 - C(2,2)/C(4,2)
    expected = np.mean([0.5, 1 - 1 / 6, 0.5, 1.0])
    assert retrieval_chance(2, 2, ks=(1, 2)) == pytest.approx(100 * expected)


def test_segmentation_chance_from_frequencies():
    # class 0: 1 px, class 1: 2 px, one ignored; IoU_c = f / (1 + f (K-1)) -> 0.25 and 0.4
    labels = np.array([[0, 1], [1, 255]])
    assert segmentation_chance([labels], 2) == pytest.approx(0.325)
    # a class absent from the split is left out of the mean
    expected = np.mean([(1 / 3) / (1 + 2 / 3), (2 / 3) / (1 + 4 / 3)])
    assert segmentation_chance([labels], 3) == pytest.approx(expected)
