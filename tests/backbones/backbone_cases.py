"""The tiny registered backbones every backbone test runs over (built in memory, never downloaded)."""

from __future__ import annotations

import functools

import pytest
import torch

from umgkit.backbones import create_backbone

# (registry string, builder kwargs)
TINY = {
    "umg": ("umg:tiny", {}),
    "umg_conv": ("umg:tiny_conv", {}),  # convolutional stem (BatchNorm inside the frozen trunk)
    "openclip": ("openclip:umgkit-tiny-openclip", {}),
    "timm": ("timm:vit_tiny_patch16_224", {"depth": 2}),
}
ALL = [pytest.param(k, id=k) for k in TINY]
JOINT = [pytest.param(k, id=k) for k in ("umg", "openclip")]
SIZES = [pytest.param((64, 64), id="64"), pytest.param((96, 96), id="96"), pytest.param((64, 96), id="64x96")]


def build(key: str, seed: int = 0):
    """A fresh backbone, seeded so two builds are identical."""
    name, kwargs = TINY[key]
    torch.manual_seed(seed)
    return create_backbone(name, **kwargs)


@functools.cache
def shared(key: str):
    """One backbone per family for read-only tests (building open_clip / timm costs ~0.5 s)."""
    return build(key)


def images(size: tuple[int, int], batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))
