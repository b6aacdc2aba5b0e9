"""Per-item random draws that depend on nothing but ``(seed, epoch, item)``: shared by the engine's map-style
items and the shard stream, so a resumed run augments every sample as an unbroken one does."""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["item_seed", "key_index", "seeded"]


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for item ``index`` of ``epoch`` (NumPy's SeedSequence mixes the three)."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0])


def key_index(key: str) -> int:
    """A stable non-negative integer for a sample key (a stream has no index): 8 bytes of BLAKE2b."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Python, NumPy and torch (CPU) generators seeded with ``seed`` inside, restored afterwards.

    torch's CPU generator is used directly: ``torch.manual_seed`` also seeds every accelerator backend
    and costs ~0.4 ms, paid per sample here.
    """
    cpu = torch.default_generator
    states = cpu.get_state(), random.getstate(), np.random.get_state()
    cpu.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        cpu.set_state(states[0])
        random.setstate(states[1])
        np.random.set_state(states[2])
