"""A pretraining step gives bit-identical gradients when repeated with several CPU threads.

Indexing with repeated indices (``x[idx]``) accumulates its backward with atomic adds across threads on
CPU, in a varying order; the task gathers region captions with ``index_select`` instead.
"""

import torch
from conftest import tiny_config

from umgkit.config import load_config
from umgkit.data.collate import collate_dicts
from umgkit.tasks.build import build_task


def test_training_step_gradients_repeat_exactly_with_two_threads(tiny_world, tmp_path):
    path = tmp_path / "det.yaml"
    path.write_text(tiny_config(tiny_world, tmp_path / "det"))
    task = build_task(load_config(path))
    items = [task.train_dataset[i % len(task.train_dataset)] for i in range(96)]
    batch = collate_dicts(items)
    # enough region rows x embedding width for the adds to be split between threads (grain 32768)
    assert sum(len(c) for c in batch["region_captions"]) * task.model.backbone.embed_dim > 32768

    def grads() -> dict[str, torch.Tensor]:
        task.model.zero_grad()
        torch.manual_seed(0)
        task.training_step(task.model, batch)["loss"].backward()
        return {n: p.grad.clone() for n, p in task.model.named_parameters() if p.grad is not None}

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first, runs = grads(), [grads() for _ in range(3)]
    finally:
        torch.set_num_threads(threads)
    assert any(n.startswith("backbone.text.") for n in first)
    differ = sorted({n for again in runs for n in first if not torch.equal(first[n], again[n])})
    assert not differ, f"gradients differ between identical steps: {differ[:5]}"
