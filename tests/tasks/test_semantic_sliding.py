"""Sliding-window inference: grid coverage, equality with whole-image inference where it must hold."""

import pytest
import torch
from torch import nn

from umgkit.backbones import create_backbone
from umgkit.heads.segmentation import SemanticOptions, build_semantic_fpn
from umgkit.models import SemanticModel
from umgkit.models._sliding import slide_inference, whole_inference, window_starts


def test_window_starts_cover_every_pixel():
    assert window_starts(100, 32, 21) == [0, 21, 42, 63, 68]  # last window ends at the border
    assert window_starts(64, 64, 43) == [0]
    assert window_starts(20, 64, 43) == [0]  # smaller than the window: one (shrunk) window
    for length, win, stride in [(70, 32, 21), (33, 32, 1), (512, 512, 341), (683, 512, 341)]:
        covered = torch.zeros(length)
        for s in window_starts(length, win, stride):
            covered[s:s + min(win, length)] = 1
        assert bool(covered.all())


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    backbone = create_backbone("umg:tiny")
    head = build_semantic_fpn(backbone, num_classes=5,
                              options=SemanticOptions(pyramid_channels=32, channels=32, dropout=0.0))
    return SemanticModel(backbone, head).eval()


@torch.no_grad()
def test_window_covering_the_image_equals_whole(tiny_model):
    # 40 x 56 is not a multiple of the window (64) nor of the patch (8 -> grid 5 x 7): the window
    # shrinks to the image, so the single window IS the whole image (exact, not approximately).
    image = torch.randn(2, 3, 40, 56)
    whole = whole_inference(tiny_model, image)
    slide = slide_inference(tiny_model, image, window=64, stride=43)
    assert slide.shape == (2, 5, 40, 56)
    assert torch.equal(slide, whole)


@torch.no_grad()
def test_local_predictor_slides_exactly_with_overlap_and_padding():
    # a per-pixel predictor (1x1 conv) gives every window the same logits at a pixel, so the count-map
    # average must reproduce whole-image inference on any size, window, stride and with padding.
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 1)
    image = torch.randn(1, 3, 70, 90)
    whole = whole_inference(conv, image)
    for window, stride in [(32, 21), ((24, 40), (16, 30)), (32, 32)]:
        torch.testing.assert_close(slide_inference(conv, image, window, stride), whole)
    small = torch.randn(1, 3, 20, 27)
    seen = []
    out = slide_inference(lambda x: seen.append(tuple(x.shape[-2:])) or conv(x), small, 32, 21, pad=True)
    assert seen == [(32, 32)]  # padded up to the window
    torch.testing.assert_close(out, whole_inference(conv, small))


@torch.no_grad()
def test_sliding_on_a_vit_any_size(tiny_model):
    image = torch.randn(1, 3, 75, 101)  # overlapping windows on an odd size
    out = slide_inference(tiny_model, image, window=48, stride=32)
    assert out.shape == (1, 5, 75, 101) and bool(torch.isfinite(out).all())


def test_stride_larger_than_window_raises():
    with pytest.raises(ValueError, match="stride"):
        slide_inference(nn.Identity(), torch.zeros(1, 3, 8, 8), window=4, stride=5)
