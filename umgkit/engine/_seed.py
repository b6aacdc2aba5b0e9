"""Seeding and RNG state capture, so a resumed run draws the same random numbers as an unbroken one.

States are split into tensors (torch / CUDA generators, stored in safetensors) and plain JSON data
(Python's and NumPy's Mersenne Twister states), so a checkpoint never needs pickle.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .._rng import item_seed, seeded

__all__ = ["seed_everything", "capture_rng_state", "restore_rng_state", "SeededItems", "item_seed"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, torch and every CUDA device with the same ``seed`` on every process.

    The same seed on all processes is deliberate: data order is sharded by Accelerate from one
    shared permutation, and model-side randomness (dropout) should not depend on the process count.
    """
    from accelerate.utils import set_seed

    set_seed(seed, device_specific=False)


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's generator states as ``(tensors, json_data)``."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = state
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    data = {
        "python": [version, list(mt), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return tensors, data


def restore_rng_state(tensors: dict[str, torch.Tensor], data: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`; CUDA states are restored only for devices present now."""
    torch.set_rng_state(tensors["torch"].to(torch.uint8).cpu())
    cuda = sorted((int(k.split(".")[1]), v) for k, v in tensors.items() if k.startswith("cuda."))
    if cuda and torch.cuda.is_available():
        for i, state in cuda[: torch.cuda.device_count()]:
            torch.cuda.set_rng_state(state.to(torch.uint8).cpu(), device=i)
    version, mt, gauss = data["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = data["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


class SeededItems(Dataset):
    """Map-style view of ``dataset`` whose item ``i`` is loaded with every generator seeded from
    ``(seed, epoch, i)``.

    Random augmentation then depends on nothing else: not on how far a loader has read ahead
    (Accelerate fetches one batch early, so the RNG state a checkpoint saves is already past it), nor on
    the number of workers or processes. A resumed run therefore sees the same crops as an unbroken one.
    The epoch lives in shared memory (`set_epoch`), so persistent DataLoader workers, which keep the
    copy of this object they started with, still see each new epoch.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, int(seed)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        with seeded(item_seed(self.seed, self.epoch, index)):
            return self.dataset[index]
