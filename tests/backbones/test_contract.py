"""Every contract method on every tiny backbone, at square and non-square sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from backbone_cases import ALL, JOINT, SIZES, images, shared

from umgkit.backbones import Backbone


def _unit(x: torch.Tensor, dim: int = -1) -> None:
    torch.testing.assert_close(x.norm(dim=dim), torch.ones_like(x.norm(dim=dim)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("key", ALL)
def test_declared_shapes(key):
    bb = shared(key)
    assert isinstance(bb, Backbone)
    expected = {"umg": (128, 128, 8, 4, True), "umg_conv": (128, 128, 8, 4, True),
                "openclip": (64, 64, 8, 2, True), "timm": (None, 192, 16, 2, False),
                "timm_eva": (None, 192, 14, 2, False), "openclip_eva02": (64, 192, 14, 12, True),
                "openclip_vit_map": (192, 192, 16, 12, True),
                "hf_clip": (16, 32, 8, 2, True), "hf_siglip": (32, 32, 8, 2, True)}[key]
    assert (bb.embed_dim, bb.width, bb.patch_size, bb.num_layers, bb.has_text) == expected
    assert len(bb.blocks) == bb.num_layers


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("key", ALL)
def test_image_methods(key, size):
    bb, x = shared(key), images(size)
    h, w = size[0] // bb.patch_size, size[1] // bb.patch_size
    emb = bb.encode_image(x)
    assert emb.shape == (2, bb.embed_dim or bb.width)
    _unit(emb)
    dense = bb.dense(x)
    assert dense.shape == (2, bb.width, h, w)
    inter = bb.intermediate(x, [0, -1])
    assert [t.shape for t in inter] == [(2, bb.width, h, w)] * 2
    # the last intermediate is the last block's output: dense is its final norm
    normed = bb.final_norm(inter[1].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(normed, dense, atol=1e-5, rtol=1e-5)
    assert bb.forward_tokens(x).shape == (2, bb.num_prefix_tokens + h * w, bb.width)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("key", JOINT)
def test_joint_space_methods(key, size):
    bb, x = shared(key), images(size)
    h, w = size[0] // bb.patch_size, size[1] // bb.patch_size
    pix = bb.embed_pixels(x)
    assert pix.shape == (2, bb.embed_dim, h, w)
    _unit(pix, dim=1)
    boxes = [torch.tensor([[0.0, 0.0, size[1], size[0]], [4.0, 8.0, 30.0, 50.0]]), torch.zeros(0, 4)]
    reg = bb.embed_regions(x, boxes)
    assert reg.shape == (2, bb.embed_dim)
    _unit(reg)


@pytest.mark.parametrize("key", JOINT)
def test_whole_image_region_is_mean_pooled_patches(key):
    """A box covering the image samples exactly the patch centres: the region embedding is
    final-norm + projection of the mean patch token."""
    bb, x = shared(key), images((64, 96))
    p = bb.patch_size  # the grid covers whole patches only (patch 14: 84 x 56 of the 96 x 64 pixels)
    reg = bb.embed_regions(x, [torch.tensor([[0.0, 0.0, 96 // p * p * 1.0, 64 // p * p * 1.0]])] * 2)
    tokens = bb.forward_tokens(x)[:, bb.num_prefix_tokens:]
    expected = F.normalize(bb.project(tokens.mean(1)), dim=-1)
    torch.testing.assert_close(reg, expected, atol=1e-5, rtol=1e-5)
    # a box of exactly one patch samples its centre once: it equals that patch's pixel embedding
    one = bb.embed_regions(x, [torch.tensor([[p * 1.0, p * 2.0, p * 2.0, p * 3.0]])] * 2)  # row 2, col 1
    torch.testing.assert_close(one, bb.embed_pixels(x)[:, :, 2, 1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("key", JOINT)
def test_text(key):
    bb = shared(key)
    t = bb.encode_text(["a photo of a cat", "a red square", ""])
    assert t.shape == (3, bb.embed_dim)
    _unit(t)
    assert not torch.allclose(t[0], t[1])
    torch.testing.assert_close(bb.encode_text("a red square")[0], t[1], atol=1e-6, rtol=0)


def test_timm_has_no_text_or_joint_space():
    bb = shared("timm")
    with pytest.raises(RuntimeError, match=r"timm:vit_tiny_patch16_224 has no text tower; pick a backbone "
                                           r"with one, e\.g\. openclip:ViT-B-16 or umg:tiny"):
        bb.encode_text(["a cat"])
    x = images((64, 64))
    with pytest.raises(NotImplementedError, match="no joint image-text space"):
        bb.embed_pixels(x)
    with pytest.raises(NotImplementedError, match="no joint image-text space"):
        bb.embed_regions(x, [torch.zeros(1, 4)] * 2)


@pytest.mark.parametrize("key", ALL)
def test_native_size_matches_wrapped_model(key):
    """Our piecewise forward equals the library's own forward at the model's native size."""
    bb = shared(key)
    x = images(bb.image_size)
    ours = bb.encode_image(x)
    if key.startswith("openclip"):
        torch.testing.assert_close(ours, bb.model.encode_image(x, normalize=True), atol=1e-5, rtol=1e-5)
        texts = ["a photo of a red circle", "the blue square"]
        ref = bb.model.encode_text(bb.tokenize(texts), normalize=True)
        torch.testing.assert_close(bb.encode_text(texts), ref, atol=1e-5, rtol=1e-5)
    elif key.startswith("timm"):
        torch.testing.assert_close(ours, F.normalize(bb.model(x), dim=-1), atol=1e-5, rtol=1e-5)
        ref = bb.model.forward_features(x)[:, bb.num_prefix_tokens:]
        torch.testing.assert_close(bb.dense(x).flatten(2).transpose(1, 2), ref, atol=1e-5, rtol=1e-5)
    elif key.startswith("hf_"):  # transformers' own image and text features
        ref = bb.model.get_image_features(pixel_values=x)
        torch.testing.assert_close(ours, F.normalize(ref.pooler_output, dim=-1), atol=1e-5, rtol=1e-5)
        texts = ["a photo of a red circle", "the blue square"]
        ref = bb.model.get_text_features(**bb.tokenize(texts)).pooler_output
        torch.testing.assert_close(bb.encode_text(texts), F.normalize(ref, dim=-1), atol=1e-5, rtol=1e-5)
    else:
        assert ours.shape == (2, 128)


@pytest.mark.parametrize("key", ALL)
def test_frozen_and_eval_after_train(key):
    bb = shared(key)
    assert not any(p.requires_grad for p in bb.parameters())
    bb.train()
    try:
        assert bb.training  # the wrapper reports the requested mode ...
        assert not any(m.training for m in bb.modules() if m is not bb)  # ... the trunk stays in eval
        probe = torch.nn.Dropout(0.5)
        bb.add_module("probe_adapter", probe)  # modules added later (adapters) follow train()
        bb.train()
        assert probe.training and not bb.blocks[0].training
    finally:
        del bb.probe_adapter
        bb.eval()


def test_set_trainable_unfreezes():
    from backbone_cases import build

    bb = build("umg").set_trainable(True)
    bb.train()
    assert all(p.requires_grad for p in bb.parameters())
    assert all(m.training for m in bb.modules())
    bb.set_trainable(False)
    assert not any(p.requires_grad for p in bb.parameters()) and not bb.blocks[0].training


@pytest.mark.parametrize("key", ALL)
def test_layer_index_errors(key):
    with pytest.raises(IndexError, match="out of range"):
        shared(key).intermediate(images((64, 64)), [99])


def test_map_pooled_towers_embed_a_token_as_their_head_pools_it():
    """SigLIP-style attention pooling: a patch's joint embedding is what the pooling head returns for an
    image of that one patch (the value path), for transformers' and open_clip's towers alike."""
    x = images((64, 96))
    bb = shared("openclip_vit_map")
    tokens = bb.forward_tokens(x)
    one = torch.cat([tokens[:, :1], tokens[:, 5:6]], dim=1)  # class token (not pooled) + one patch
    expected = bb.model.visual.head(bb.trunk.forward_head(bb.final_norm(one)))
    torch.testing.assert_close(bb.project(tokens[:, 5]), expected, atol=1e-5, rtol=1e-5)
    hf = shared("hf_siglip")
    tokens = hf.forward_tokens(x)
    expected = hf.model.vision_model.head(hf.final_norm(tokens[:, 5:6]))
    torch.testing.assert_close(hf.project(tokens[:, 5]), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("key", JOINT)
def test_value_dense_path_runs_the_last_block_with_self_only_attention(key):
    """model.dense=value: the last block sees each token attend only to itself (MaskCLIP's value path);
    the pooled image feature does not change, a one-patch region still equals its pixel embedding."""
    from backbone_cases import build

    bb, x = build(key), images((64, 96))
    projected = bb.embed_pixels(x)
    image = bb.encode_image(x)
    bb.set_dense_path("value")
    pix = bb.embed_pixels(x)
    assert pix.shape == projected.shape and not torch.allclose(pix, projected, atol=1e-3)
    torch.testing.assert_close(bb.encode_image(x), image, atol=0, rtol=0)
    p = bb.patch_size
    one = bb.embed_regions(x, [torch.tensor([[p * 1.0, p * 2.0, p * 2.0, p * 3.0]])] * 2)
    torch.testing.assert_close(one, pix[:, :, 2, 1], atol=1e-5, rtol=1e-5)
    if key == "umg":  # written out for umg's own block: x + proj(v(norm1(x))), then the MLP
        tokens, _ = bb._embed(x)
        for block in bb.blocks[:-1]:
            tokens = block(tokens)
        last, c = bb.blocks[-1], bb.width
        value = F.linear(last.norm1(tokens), last.attn.qkv.weight[2 * c:], last.attn.qkv.bias[2 * c:])
        y = tokens + last.attn.proj(value)
        y = y + last.mlp(last.norm2(y))
        expected = F.normalize(bb.project(y[:, 1:]), dim=-1)
        torch.testing.assert_close(pix.flatten(2).transpose(1, 2), expected, atol=1e-5, rtol=1e-5)


def test_value_dense_path_is_checked():
    from umgkit.backbones import create_backbone
    from umgkit.errors import ConfigError

    with pytest.raises(ConfigError, match="model.dense: dense path 'sideways': choose one of project, value"):
        shared("umg").set_dense_path("sideways")
    with pytest.raises(ConfigError, match="model.dense: .*hierarchical model has stages"):
        create_backbone("timm:convnext_atto").set_dense_path("value")
