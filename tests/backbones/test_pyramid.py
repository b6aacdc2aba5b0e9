"""Pyramid levels follow the declared shapes: keys p2..p5, strides 4..32, for any patch size."""

from __future__ import annotations

import pytest
import torch
from backbone_cases import ALL, images, shared

from umgkit.backbones import SimpleFeaturePyramid, parameter_free_pyramid


@pytest.mark.parametrize("key", ALL)
def test_backbone_pyramid_matches_declared_shapes(key):
    bb = shared(key)
    x = images((112, 224))  # whole patches of 8, 14 and 16 px; p5 of a patch-14 grid lands on stride 32
    shapes = bb.pyramid_shapes()
    assert {k: v.stride for k, v in shapes.items()} == {"p2": 4, "p3": 8, "p4": 16, "p5": 32}
    free = bb.pyramid(x)
    neck = SimpleFeaturePyramid.from_backbone(bb, out_channels=24)  # 24: no backbone here is 24 wide
    learned = bb.pyramid(x, channels=24, neck=neck)
    declared = bb.pyramid_shapes(channels=24)
    for k, spec in shapes.items():
        assert free[k].shape == (2, spec.channels, 112 // spec.stride, 224 // spec.stride)
        assert learned[k].shape == (2, declared[k].channels, 112 // spec.stride, 224 // spec.stride)
    with pytest.raises(ValueError, match="SimpleFeaturePyramid.from_backbone"):
        bb.pyramid(x, channels=24)


@pytest.mark.parametrize("patch", [8, 14, 16, 32])
def test_pyramid_strides_for_patch_sizes(patch):
    size = 224
    fmap = torch.randn(1, 24, size // patch, size // patch)
    neck = SimpleFeaturePyramid(width=24, patch_size=patch, out_channels=16)
    out, free = neck(fmap), parameter_free_pyramid(fmap, patch)
    for k, stride in SimpleFeaturePyramid.STRIDES.items():
        assert out[k].shape == (1, 16, size // stride, size // stride), (k, out[k].shape)
        assert free[k].shape == (1, 24, size // stride, size // stride)


def test_pyramid_is_trainable_backbone_is_not():
    bb = shared("umg")
    neck = SimpleFeaturePyramid.from_backbone(bb, out_channels=16)
    assert all(p.requires_grad for p in neck.parameters())
    loss = sum(v.square().mean() for v in bb.pyramid(images((64, 64)), neck=neck).values())
    loss.backward()
    assert all(p.grad is not None for p in neck.parameters())
    assert all(p.grad is None for p in bb.parameters())
