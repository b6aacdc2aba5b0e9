"""Run by test_pretrain_losses under torch.distributed.run (2 CPU processes, gloo).

For each case of CASES, every rank takes its slice of a fixed global batch (region counts may differ
per rank, one rank may hold none), computes the loss with gathered negatives and backpropagates;
rank 0 writes every rank's loss and input gradients to the JSON file argv[1].
"""

import json
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

from umgkit.pretrain.losses import caption_hash_ids, image_text_loss, region_text_loss

CASES = [
    {"name": "image_text", "kind": "image", "sizes": [4, 4], "seed": 0},
    {"name": "regions_unequal", "kind": "region", "sizes": [3, 5], "seed": 1},
    {"name": "regions_one_empty", "kind": "region", "sizes": [0, 4], "seed": 2},
    {"name": "regions_described", "kind": "region", "sizes": [3, 5], "seed": 3, "describes": True},
    {"name": "regions_described_one_empty", "kind": "region", "sizes": [0, 4], "seed": 4, "describes": True},
]


def make_batch(case: dict) -> dict:
    """The global batch: embeddings a (N, 6), b (N, 6), a scale, and caption ids repeating every 3 rows."""
    g = torch.Generator().manual_seed(case["seed"])
    n = sum(case["sizes"])
    a = F.normalize(torch.randn(n, 6, generator=g), dim=1)
    b = F.normalize(torch.randn(n, 6, generator=g), dim=1)
    captions = [f"a shape of kind {i % 3}" for i in range(n)]  # repeats across ranks
    ids = caption_hash_ids(captions)
    # captions true of each row: its own, "a shape" for even rows (a coarser caption some rows are drawn
    # with), padded by repeating the own id (rank 0 drops that padding column to test widening)
    describes = torch.stack([caption_hash_ids([c, "a shape" if i % 2 == 0 else c, c])
                             for i, c in enumerate(captions)])
    ids[1::4] = caption_hash_ids(["a shape"])  # rows 1, 5, ... were drawn as "a shape"
    describes[1::4, 1] = ids[1::4]
    return {"a": a, "b": b, "scale": torch.tensor(1.3), "ids": ids, "describes": describes}


def run_case(case: dict, rank: int) -> dict:
    batch = make_batch(case)
    start = sum(case["sizes"][:rank])
    rows = slice(start, start + case["sizes"][rank])
    a = batch["a"][rows].clone().requires_grad_(True)
    b = batch["b"][rows].clone().requires_grad_(True)
    scale = batch["scale"].clone().requires_grad_(True)
    if case["kind"] == "image":
        loss = image_text_loss(a, b, scale, gather=True)
    else:
        describes = batch["describes"][rows] if case.get("describes") else None
        if describes is not None and rank == 0:
            describes = describes[:, :2]  # narrower rows than rank 1's: the loss widens them
        loss = region_text_loss(a, b, scale, caption_ids=batch["ids"][rows], describes=describes, gather=True)
    loss.backward()
    return {"loss": loss.item(), "a": a.grad.tolist(), "b": b.grad.tolist(), "scale": scale.grad.item()}


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    out = {case["name"]: run_case(case, rank) for case in CASES}
    gathered = [None] * world
    dist.all_gather_object(gathered, out)
    if rank == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(gathered, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
