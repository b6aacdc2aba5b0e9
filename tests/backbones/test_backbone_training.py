"""Gradient checkpointing, position-embedding resampling and the block layout adapters rely on."""

from __future__ import annotations

import pytest
import torch
from backbone_cases import ALL, build, images

from umgkit.adapters import _structure as structure
from umgkit.backbones._pos_embed import resample_pos_embed


def _probe_grads(bb, checkpointing: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of a trainable probe inside the trunk (first block's first norm) and of the input."""
    block = bb.blocks[0]
    norm = next(getattr(block, n) for n in ("norm1", "ln_1", "layer_norm1") if hasattr(block, n))
    norm.weight.requires_grad_(True)
    norm.weight.grad = None
    bb.set_grad_checkpointing(checkpointing)
    x = images((64, 96)).requires_grad_(True)
    bb.dense(x).square().mean().backward()
    norm.weight.requires_grad_(False)
    bb.set_grad_checkpointing(False)
    return norm.weight.grad.clone(), x.grad.clone()


@pytest.mark.parametrize("key", ALL)
def test_grad_checkpointing_same_gradients(key):
    bb = build(key)
    plain = _probe_grads(bb, False)
    ckpt = _probe_grads(bb, True)
    assert plain[0].abs().sum() > 0
    for a, b in zip(plain, ckpt, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_resample_pos_embed():
    pos = torch.randn(1, 1 + 4 * 4, 8)
    assert resample_pos_embed(pos, (4, 4), (4, 4)) is pos
    const = torch.cat([torch.zeros(1, 1, 8), torch.ones(1, 16, 8) * 3.0], dim=1)
    out = resample_pos_embed(const, (4, 4), (6, 9))
    assert out.shape == (1, 1 + 54, 8)
    torch.testing.assert_close(out[:, 1:], torch.full((1, 54, 8), 3.0))  # constants stay constant
    assert torch.equal(out[:, :1], const[:, :1])  # class token kept


@pytest.mark.parametrize("key,style,towers", [("umg", "timm", {"vision", "text"}),
                                              ("openclip", "open_clip", {"vision", "text"}),
                                              ("timm", "timm", {"vision"}),
                                              ("timm_eva", "timm", {"vision"}),
                                              ("hf_clip", "hf", {"vision", "text"}),
                                              ("hf_siglip", "hf", {"vision", "text"})])
def test_adapters_find_the_blocks(key, style, towers):
    bb = build(key)
    lists = structure.find_block_lists(bb)
    assert {bl.tower for bl in lists} == towers and {bl.style for bl in lists} == {style}
    vision = [bl for bl in lists if bl.tower == "vision"][0]
    assert structure.get_submodule(bb, vision.path) is bb.blocks
