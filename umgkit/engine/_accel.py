"""Creating the Accelerator: CPU multi-process detection, seedable data order, precision changes."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["make_accelerator"]


def make_accelerator(mixed_precision: str, seed: int, grad_accum: int = 1) -> Any:
    """An Accelerator whose prepared train loader draws its order from ``(seed, epoch)``.

    ``grad_accum`` goes to Accelerate, so that ``accelerator.accumulate`` decides when gradients are
    synchronised (and DeepSpeed, which accumulates inside its engine, is told the same count).
    """
    from accelerate import Accelerator, PartialState
    from accelerate.state import AcceleratorState
    from accelerate.utils import DataLoaderConfiguration

    def make() -> Any:
        return Accelerator(
            # Accelerate picks gloo (MULTI_CPU) under torchrun only when told the run is on CPU.
            cpu=not _has_device_accelerator(),
            mixed_precision=mixed_precision,
            gradient_accumulation_steps=grad_accum,
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=seed),
        )

    try:
        return make()
    except ValueError as err:
        # Accelerate keeps one process-wide state and refuses a second precision. A single-process
        # run (tests, notebooks) can safely start over; a distributed one must not, so it re-raises.
        if "already been initialized" not in str(err) or PartialState().use_distributed:
            raise
        AcceleratorState._reset_state()
        return make()


def _has_device_accelerator() -> bool:
    """True when torch sees a GPU (or other accelerator) this process could train on."""
    probe = getattr(torch, "accelerator", None)
    return bool(probe.is_available()) if probe is not None else torch.cuda.is_available()
