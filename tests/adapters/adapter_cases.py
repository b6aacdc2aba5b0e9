"""Shared tables for the adapter tests: tiny backbones (generated in memory, never downloaded) and methods.

Each case is ``(id, build, forward)``: ``build()`` returns a fresh seeded model and ``forward(model, x)``
its image embedding / features for images ``x`` of shape (B, 3, 32, 32).
"""

from __future__ import annotations

import atexit
import copy
import functools
import shutil
import tempfile
from pathlib import Path

import open_clip
import pytest
import timm
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg

from umgkit.backbones import create_backbone
from umgkit.backbones.hf_tiny import save_tiny_hf

IMAGE = 32


def _cached(build):
    """Build once (seeded), hand out deep copies: model construction dominates these tests' runtime."""
    prototype = functools.cache(build)

    @functools.wraps(build)
    def fresh() -> torch.nn.Module:
        return copy.deepcopy(prototype())

    return fresh


@_cached
def tiny_timm() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=2,
                             img_size=IMAGE, patch_size=8).eval()


@_cached
def tiny_timm_reg() -> torch.nn.Module:
    """timm ViT with 2 register tokens (3 prefix tokens): exercises VPT's prefix handling."""
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=2,
                             img_size=IMAGE, patch_size=8, reg_tokens=2).eval()


@_cached
def tiny_openclip() -> torch.nn.Module:
    torch.manual_seed(0)
    model = open_clip.model.CLIP(
        embed_dim=16,
        vision_cfg=CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=8, image_size=IMAGE),
        text_cfg=CLIPTextCfg(context_length=8, vocab_size=100, width=32, heads=2, layers=2))
    return model.eval()


def _timm_forward(model, x):
    return model(x)


def _openclip_forward(model, x):
    return model.encode_image(x)


BACKBONES = [
    pytest.param(tiny_timm, _timm_forward, id="timm"),
    pytest.param(tiny_openclip, _openclip_forward, id="openclip"),
]


def _create(name: str, **kwargs):
    torch.manual_seed(0)
    return create_backbone(name, **kwargs).eval()


@_cached
def umg_tiny() -> torch.nn.Module:
    return _create("umg:tiny")


@_cached
def umgkit_openclip_tiny() -> torch.nn.Module:
    return _create("openclip:umgkit-tiny-openclip")


@_cached
def umgkit_timm_tiny() -> torch.nn.Module:
    return _create("timm:vit_tiny_patch16_224", depth=2, img_size=IMAGE, patch_size=8)


def _encode_image(model, x):
    return model.encode_image(x)


def _dense(model, x):
    return model.dense(x)


@_cached
def umgkit_timm_eva() -> torch.nn.Module:
    """timm EVA02: fused qkv, rotary position embeddings passed to every block."""
    return _create("timm:eva02_tiny_patch14_224", depth=2, img_size=IMAGE, patch_size=8)


@_cached
def umgkit_timm_eva_separate() -> torch.nn.Module:
    """timm EVA with separate q / k / v projections (``qkv_fused=False``), the layout open_clip's EVA02-CLIP
    towers are built with (see test_support_matrix.py for openclip:EVA02-B-16 itself)."""
    return _create("timm:eva02_tiny_patch14_224", depth=2, img_size=IMAGE, patch_size=8, qkv_fused=False)


@_cached
def umgkit_openclip_eva02() -> torch.nn.Module:
    """open_clip EVA02-CLIP layout: a timm EVA02 trunk inside open_clip's CLIP, text tower beside it."""
    return _create("openclip:umgkit-tiny-eva02")


@_cached
def umgkit_openclip_vit_map() -> torch.nn.Module:
    """open_clip SigLIP layout: a timm ViT trunk pooled by attention (MAP), no projection head."""
    return _create("openclip:umgkit-tiny-vit-map")


@functools.cache
def _hf_folder(kind: str) -> str:
    root = Path(tempfile.mkdtemp(prefix="umgkit-hf-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return str(save_tiny_hf(root / kind, kind, image_size=IMAGE))


@_cached
def umgkit_hf_clip() -> torch.nn.Module:
    """transformers CLIPModel (separate q/k/v projections) through hf:<folder>."""
    return _create("hf:" + _hf_folder("clip"))


@_cached
def umgkit_hf_siglip() -> torch.nn.Module:
    """transformers SiglipModel (no class token, MAP head) through hf:<folder>."""
    return _create("hf:" + _hf_folder("siglip"))


# umgkit Backbone wrappers (ViT under an attribute, found structurally); umg:tiny is umgkit's own ViT.
UMGKIT_BACKBONES = [
    pytest.param(umg_tiny, _encode_image, id="umg"),
    pytest.param(umgkit_openclip_tiny, _encode_image, id="umgkit-openclip"),
    pytest.param(umgkit_timm_tiny, _dense, id="umgkit-timm"),
    pytest.param(umgkit_timm_eva, _dense, id="umgkit-timm-eva"),
    pytest.param(umgkit_timm_eva_separate, _dense, id="umgkit-timm-eva-separate-qkv"),
    pytest.param(umgkit_openclip_eva02, _encode_image, id="umgkit-openclip-eva02"),
    pytest.param(umgkit_openclip_vit_map, _encode_image, id="umgkit-openclip-vit-map"),
    pytest.param(umgkit_hf_clip, _encode_image, id="umgkit-hf-clip"),
    pytest.param(umgkit_hf_siglip, _encode_image, id="umgkit-hf-siglip"),
]


def images() -> torch.Tensor:
    return torch.randn(2, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1))


# (method, options) run against every tiny backbone.
METHODS = [
    ("lora", {"rank": 4}),
    ("dora", {"rank": 4}),
    ("loha", {"rank": 4}),
    ("lokr", {"rank": 4}),
    ("lora_qv", {"rank": 4}),
    ("adaptformer", {"bottleneck": 4}),
    ("adapter", {"bottleneck": 4, "positions": ["mlp", "attn"]}),
    ("vpt", {"num_tokens": 3}),
    ("vpt", {"num_tokens": 3, "deep": True}),
    ("bitfit", {}),
    ("ssf", {}),
    ("full", {}),
]
MERGEABLE = {"lora", "dora", "loha", "lokr", "lora_qv", "ssf", "bitfit"}


def method_params(only=None):
    """pytest params over METHODS (optionally only those whose name is in ``only``)."""
    return [pytest.param(name, opts, id=f"{name}-{'-'.join(f'{k}{v}' for k, v in opts.items()) or 'default'}")
            for name, opts in METHODS if only is None or name in only]


def perturb_adapter(model: torch.nn.Module, adapter, scale: float = 0.1) -> None:
    """Make every owned parameter non-trivial (LoRA B / bottleneck up start at zero)."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if adapter.owns(name):
                p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
