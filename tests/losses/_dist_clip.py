"""Run by test_contrastive_loss under torch.distributed.run (2 CPU processes, gloo).

Each rank takes its part of a fixed global batch of 8 (argv[2]: the per-rank row counts, e.g. "3,5" or
"0,8"; default an equal split), computes clip_loss with gathered negatives and backpropagates; rank 0
writes the per-rank losses and input gradients to the JSON file argv[1].
"""

import json
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

from umgkit.losses import clip_loss


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    g = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(8, 6, generator=g), dim=1)
    texts = F.normalize(torch.randn(8, 6, generator=g), dim=1)
    sizes = [int(n) for n in sys.argv[2].split(",")] if len(sys.argv) > 2 else [8 // world] * world
    start = sum(sizes[:rank])
    img = images[start:start + sizes[rank]].clone().requires_grad_(True)
    txt = texts[start:start + sizes[rank]].clone().requires_grad_(True)
    scale = torch.tensor(1.5, requires_grad=True)
    loss = clip_loss(img, txt, scale)
    loss.backward()
    grads = [[] if t.grad is None else t.grad.tolist() for t in (img, txt)]  # no rows: no gradient
    out = {"loss": loss.item(), "img_grad": grads[0], "txt_grad": grads[1],
           "scale_grad": scale.grad.item()}
    gathered = [None] * world
    dist.all_gather_object(gathered, out)
    if rank == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(gathered, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
