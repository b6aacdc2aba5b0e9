"""Per-item seeding: a sample's random augmentation depends only on (seed, epoch, index)."""

import random

import numpy as np
import torch

from umgkit.engine._seed import SeededItems


class Draws(torch.utils.data.Dataset):
    """Each item is one draw from each global generator, as random transforms make."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return float(torch.rand(())), random.random(), float(np.random.rand())


def test_items_depend_on_seed_epoch_and_index_only_and_leave_global_state_alone():
    items = SeededItems(Draws(), seed=3)
    first = items[5]
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    assert items[2] != first  # another index
    assert items[5] == first  # read ahead or not: the same draws
    after = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1])
    assert torch.equal(before[0], after[0]) and before[1] == after[1] and np.array_equal(before[2], after[2])
    items.set_epoch(1)
    assert items[5] != first  # a new epoch draws new augmentation
    items.set_epoch(0)
    assert items[5] == first and SeededItems(Draws(), seed=4)[5] != first
    assert len(items) == 8
