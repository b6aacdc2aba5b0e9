"""Run by test_pretrain_task under torch.distributed.run (2 CPU processes, gloo).

Both ranks build the same tiny pretraining task and the same 5 items; rank 0 trains on none of them
(its batch was skipped: the task's ``empty_batch``), rank 1 on all 5, through DDP. Rank 0 writes both
ranks' losses and the averaged gradients to the JSON file argv[2]; argv[1] is the run config.
"""

import json
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from umgkit.config import load_config
from umgkit.data.collate import collate_dicts
from umgkit.tasks import build_task

OVERRIDES = ["task_options.captions=first",
             "task_options.losses={image_text: 1, region_text: 1, region_tag: 0, sparc: 1, pixel: 1}"]


def fixed_batch(task, n: int = 5) -> dict:
    torch.manual_seed(7)  # the random crops: the same items on every rank and in the test
    return collate_dicts([task.train_dataset[i] for i in range(n)])


def step(task, model, batch):
    out = task.training_step(model, batch)
    out["loss"].backward()
    return float(out["loss"].detach())


if __name__ == "__main__":
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    task = build_task(load_config(sys.argv[1], OVERRIDES))
    batch = fixed_batch(task)
    if rank == 0:
        batch = task.empty_batch()
    model = DistributedDataParallel(task.model)
    loss = step(task, model, batch)
    losses = [None, None]
    dist.all_gather_object(losses, loss)
    if rank == 0:
        grads = {n: p.grad.tolist() for n, p in task.model.named_parameters() if p.grad is not None}
        with open(sys.argv[2], "w", encoding="utf-8") as fh:
            json.dump({"losses": losses, "grads": grads}, fh)
    dist.barrier()
    dist.destroy_process_group()
