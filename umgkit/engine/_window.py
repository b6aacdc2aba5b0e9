"""Running sums of the logged training scalars between two log rows."""

from __future__ import annotations

import time
from typing import Any

import torch

__all__ = ["StepWindow", "batch_size"]


class StepWindow:
    """Running sums of the scalars between two log rows, kept on device to avoid a sync per step."""

    def __init__(self, device: torch.device):
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.step_sums: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.samples = 0
        self.start = time.perf_counter()
        self.lr = 0.0
        self.grad_norm = None

    def add_micro(self, out: dict[str, Any], n_samples: int, n_micro: int) -> None:
        """Each micro-batch adds value / n_micro, so a step holds the mean over its micro-batches."""
        for key, value in out.items():
            value = torch.as_tensor(value).detach().float().to(self.device)
            if value.numel() == 1:
                self.step_sums[key] = self.step_sums.get(key, 0) + value.reshape(()) / n_micro
        self.samples += n_samples

    def end_step(self, lr: float, grad_norm: Any) -> None:
        for key, value in self.step_sums.items():
            self.sums[key] = self.sums.get(key, 0) + value
        self.step_sums = {}
        self.steps += 1
        self.lr = lr
        self.grad_norm = grad_norm

    def reduce(self, acc: Any) -> dict[str, float]:
        """Mean over processes and over the window's steps; one collective for all scalars.

        Every process must return the same keys from ``training_step`` (they are stacked in order).
        """
        keys = sorted(self.sums)
        local = torch.stack([self.sums[k] for k in keys] + [torch.tensor(float(self.samples),
                                                                          device=self.device)])
        mean = acc.reduce(local, reduction="mean")
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        scalars = {f"train/{k}": float(v) / self.steps for k, v in zip(keys, mean[:-1].tolist(), strict=True)}
        scalars["train/lr"] = self.lr
        scalars["train/images_per_s"] = float(mean[-1]) * acc.num_processes / elapsed
        if self.grad_norm is not None:
            scalars["train/grad_norm"] = float(self.grad_norm)
        return scalars


def batch_size(batch: Any) -> int:
    """Samples in a batch: the collated ``batch_size`` key, else the first tensor's leading size, else 0."""
    from accelerate.utils import find_batch_size

    if isinstance(batch, dict) and isinstance(batch.get("batch_size"), int):
        return batch["batch_size"]
    try:
        return int(find_batch_size(batch))
    except (TypeError, ValueError, AttributeError):
        return 0
