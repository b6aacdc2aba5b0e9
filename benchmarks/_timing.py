"""Clock helpers the benchmark scripts share (a ``_`` file: `umgkit bench` does not run it)."""

from __future__ import annotations

import time

import torch


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synced() -> float:
    """``time.perf_counter()`` after queued CUDA work has finished, so a timed span holds all of it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()
