"""The tiny registered backbones every backbone test runs over (built in memory, never downloaded)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from umgkit.backbones import create_backbone
from umgkit.backbones.hf_tiny import save_tiny_hf

# (registry string, builder kwargs); "hf:<kind>" is a tiny transformers folder written on first use
TINY = {
    "umg": ("umg:tiny", {}),
    "umg_conv": ("umg:tiny_conv", {}),  # convolutional stem (BatchNorm inside the frozen trunk)
    "openclip": ("openclip:umgkit-tiny-openclip", {}),
    "openclip_eva02": ("openclip:umgkit-tiny-eva02", {}),  # timm EVA02 trunk, projection in the trunk head
    "openclip_vit_map": ("openclip:umgkit-tiny-vit-map", {}),  # timm ViT trunk with SigLIP's MAP pooling
    "timm": ("timm:vit_tiny_patch16_224", {"depth": 2}),
    "timm_eva": ("timm:eva02_tiny_patch14_224", {"depth": 2}),  # rotary position embeddings, patch 14
    "hf_clip": ("hf:clip", {}),  # transformers CLIPModel.save_pretrained
    "hf_siglip": ("hf:siglip", {}),  # transformers SiglipModel.save_pretrained (MAP head pooling)
}
ALL = [pytest.param(k, id=k) for k in TINY]
JOINT = [pytest.param(k, id=k) for k in ("umg", "openclip", "openclip_eva02", "openclip_vit_map", "hf_clip",
                                         "hf_siglip")]


@functools.cache
def hf_folder(kind: str) -> str:
    """A tiny transformers CLIP / SigLIP checkpoint with its tokenizer, written by transformers itself."""
    root = Path(tempfile.mkdtemp(prefix="umgkit-hf-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return str(save_tiny_hf(root / kind, kind))
SIZES = [pytest.param((64, 64), id="64"), pytest.param((96, 96), id="96"), pytest.param((64, 96), id="64x96")]


def build(key: str, seed: int = 0):
    """A fresh backbone, seeded so two builds are identical."""
    name, kwargs = TINY[key]
    if name.startswith("hf:"):
        name = "hf:" + hf_folder(name[3:])
    torch.manual_seed(seed)
    return create_backbone(name, **kwargs)


@functools.cache
def shared(key: str):
    """One backbone per family for read-only tests (building open_clip / timm costs ~0.5 s)."""
    return build(key)


def images(size: tuple[int, int], batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))
