"""Samples per batch, as the throughput log counts them."""

import torch

from umgkit.data.collate import collate_dicts
from umgkit.engine._window import batch_size


def test_collated_dict_batch_counts_its_items():
    # the collated dict starts with plain ints (num_skipped), which once made the count 0
    batch = collate_dicts([{"image": torch.zeros(3, 4, 4), "label": 1}, None,
                           {"image": torch.zeros(3, 4, 4), "label": 2}])
    assert batch_size(batch) == 2


def test_all_skipped_and_plain_tensor_batches():
    assert batch_size(collate_dicts([None, None])) == 0
    assert batch_size((torch.zeros(5, 2), torch.zeros(5))) == 5
