"""Copying saved tensors into a model's parameters: one exact-match rule for every loader.

Checkpoints, adapters and model folders all store parameters by name; loading must match the names and
shapes exactly (a silently skipped key would train or predict with fresh weights).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["copy_named"]


def copy_named(params: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor], *, source: str,
               fix: str, error: type[Exception] = ValueError) -> None:
    """Copy ``tensors[name]`` into each of ``params`` (in place, no grad); ``source`` names where the
    tensors came from and ``fix`` says what to do, in the error raised on any name or shape mismatch."""
    missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise error(f"{source} does not fit the model: missing {_few(missing)}, unexpected "
                    f"{_few(unexpected)}. {fix}")
    for name, param in params.items():
        if param.shape != tensors[name].shape:
            raise error(f"{source}: '{name}' has shape {tuple(tensors[name].shape)}, the model "
                        f"{tuple(param.shape)}. {fix}")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(tensors[name])


def _few(names: list[str], limit: int = 5) -> str:
    if not names:
        return "none"
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
