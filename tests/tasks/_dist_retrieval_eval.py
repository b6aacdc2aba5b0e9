"""Run under torch.distributed.run (2 CPU processes): RetrievalTask.evaluate through Accelerate's
gather; rank 0 prints ``METRICS <json>``. Captions per image differ, so padding across processes is used."""

import json

import torch
from accelerate import Accelerator
from test_retrieval_eval import _items, _OneHotModel
from torch.utils.data import DataLoader

from umgkit.data.collate import collate_dicts
from umgkit.tasks.retrieval import RetrievalTask


def main() -> None:
    acc = Accelerator(cpu=True)
    items = _items() + _items()[:1]  # 5 images: the last global batch is padded by Accelerate
    task = RetrievalTask(model=_OneHotModel(), train_dataset=[], val_dataset=items)
    loader = acc.prepare(DataLoader(items, batch_size=1, collate_fn=collate_dicts))
    with torch.no_grad():
        metrics = task.evaluate(task.model, loader, acc)
    if acc.is_main_process:
        print("METRICS " + json.dumps(metrics))
    acc.wait_for_everyone()
    torch.distributed.destroy_process_group()  # a live gloo group at exit can abort a rank (SIGABRT)


if __name__ == "__main__":
    main()
