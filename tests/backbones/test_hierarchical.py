"""timm's hierarchical models (ConvNeXt, Swin, ResNet) behind the contract: stage features equal timm's own,
the pyramid is their stages, adapters apply / save / load / merge where they can and refuse clearly where
they cannot, and the dense heads train on them."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F

from umgkit.adapters import apply_adapter, load_adapter, merge_adapter, parameter_report, save_adapter
from umgkit.backbones import create_backbone
from umgkit.backbones.timm_features import StageNeck, TimmFeatureBackbone
from umgkit.cli import main
from umgkit.errors import ConfigError

SWIN = {"depths": (1, 1, 1, 1), "embed_dim": 24, "num_heads": (1, 1, 1, 1)}
MODELS = {"convnext": ("convnext_atto", {"conv_mlp": False}),  # Linear MLP, as ConvNeXt-T and up
          "convnext_conv_mlp": ("convnext_atto", {}),  # atto's own 1x1-conv MLP
          "swin": ("swin_tiny_patch4_window7_224", SWIN), "resnet": ("resnet18", {})}
DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo"


@functools.cache
def _prototype(key: str):
    name, kwargs = MODELS[key]
    torch.manual_seed(0)
    return create_backbone(f"timm:{name}", **kwargs)


def fresh(key: str):
    """A copy of the seeded backbone (adapters change it in place)."""
    import copy

    return copy.deepcopy(_prototype(key))


def images(size=(64, 96)) -> torch.Tensor:
    return torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("key", sorted(MODELS))
def test_stages_and_pooled_feature_equal_timms_own(key):
    bb, x = _prototype(key), images()
    assert isinstance(bb, TimmFeatureBackbone) and bb.embed_dim is None and not bb.has_text
    model = bb.model
    torch.testing.assert_close(bb.encode_image(x), F.normalize(model(x), dim=-1), atol=1e-5, rtol=1e-5)
    ref = model.forward_intermediates(x, intermediates_only=True)
    ours = bb.intermediate(x, list(range(bb.num_layers)))
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert bb.dense(x).shape == (2, bb.width, 64 // 32, 96 // 32) and bb.patch_size == 32
    feats = bb.pyramid(x)
    shapes = bb.pyramid_shapes()
    assert {k: s.stride for k, s in shapes.items()} == {"p2": 4, "p3": 8, "p4": 16, "p5": 32}
    for k, spec in shapes.items():
        assert feats[k].shape == (2, spec.channels, 64 // spec.stride, 96 // spec.stride)
    neck = bb.make_neck(16)
    assert isinstance(neck, StageNeck)
    assert {k: tuple(v.shape) for k, v in bb.pyramid(x, neck=neck).items()} == {
        k: (2, 16, 64 // s.stride, 96 // s.stride) for k, s in shapes.items()}
    with pytest.raises(NotImplementedError, match="without a token sequence"):
        bb.forward_tokens(x)
    with pytest.raises(NotImplementedError, match="no joint image-text space"):
        bb.embed_pixels(x)


def test_open_clip_convnext_tower_has_the_joint_space():
    """openclip:convnext_* (a timm ConvNeXt trunk + open_clip's projection): open_clip's own image and text
    features, and per-location / per-region embeddings through the same norm and projection."""
    torch.manual_seed(0)
    bb = create_backbone("openclip:umgkit-tiny-convnext")
    x = images()
    assert bb.has_text and bb.embed_dim == 64
    torch.testing.assert_close(bb.encode_image(x), bb.model.encode_image(x, normalize=True), atol=1e-5,
                               rtol=1e-5)
    texts = ["a red circle", "the blue square"]
    expected = bb.model.encode_text(bb.tokenize(texts), normalize=True)
    torch.testing.assert_close(bb.encode_text(texts), expected, atol=1e-5, rtol=1e-5)
    pix = bb.embed_pixels(x)
    assert pix.shape == (2, 64, 2, 3)
    torch.testing.assert_close(pix.norm(dim=1), torch.ones(2, 2, 3), atol=1e-5, rtol=0)
    # a box of exactly one stride-32 cell is that cell's pixel embedding
    one = bb.embed_regions(x, [torch.tensor([[32.0, 0.0, 64.0, 32.0]])] * 2)
    torch.testing.assert_close(one, pix[:, :, 0, 1], atol=1e-5, rtol=1e-5)


def test_open_clip_resnet_tower_pools_like_open_clip_at_any_size():
    """openclip:RN50-style towers: attention pooling with a resampled positional embedding (open_clip's own
    image feature at the native size), stages for the dense heads, the value path per location."""
    torch.manual_seed(0)
    bb = create_backbone("openclip:umgkit-tiny-rn")
    native = images((64, 64))
    torch.testing.assert_close(bb.encode_image(native), bb.model.encode_image(native, normalize=True),
                               atol=1e-5, rtol=1e-5)
    x = images()
    assert bb.encode_image(x).shape == (2, 64)
    assert {k: tuple(v.shape) for k, v in bb.pyramid(x).items()} == {
        "p2": (2, 64, 16, 24), "p3": (2, 128, 8, 12), "p4": (2, 256, 4, 6), "p5": (2, 512, 2, 3)}
    pool = bb.model.visual.attnpool
    fmap = bb.dense(x)
    pos = bb._positions((2, 3))[1:]  # the patch rows of the resampled positional embedding
    cell = pool.c_proj(pool.v_proj(fmap[:, :, 1, 2] + pos[5]))  # row 1, column 2
    torch.testing.assert_close(bb.embed_pixels(x)[:, :, 1, 2], F.normalize(cell, dim=-1), atol=1e-5,
                               rtol=1e-5)
    box = torch.tensor([[64.0, 32.0, 96.0, 64.0]])
    torch.testing.assert_close(bb.embed_regions(x, [box] * 2), F.normalize(cell, dim=-1), atol=1e-5,
                               rtol=1e-5)
    adapter = apply_adapter(bb, "bitfit", scope="model")
    assert {n for n, p in bb.named_parameters() if p.requires_grad} == {
        n for n, _ in bb.named_parameters() if adapter.owns(n)}


# (backbone, method, options): what each family supports
SUPPORTED = [("convnext", "lora", {"rank": 2}), ("convnext", "ssf", {}), ("convnext", "bitfit", {}),
             ("convnext", "adaptformer", {"bottleneck": 4}), ("convnext_conv_mlp", "lora", {"rank": 2}),
             ("swin", "lora", {"rank": 2}), ("swin", "lora_qv", {"rank": 2}), ("swin", "bitfit", {}),
             ("resnet", "bitfit", {"scope": "model"}), ("resnet", "lora", {"rank": 2})]
MERGEABLE = {"lora", "lora_qv", "ssf", "bitfit"}


@pytest.mark.parametrize("key, method, options", SUPPORTED, ids=lambda v: str(v))
def test_adapter_applies_saves_loads_and_merges(tmp_path, key, method, options):
    bb = fresh(key)
    adapter = apply_adapter(bb, method, **options)
    owned = {n for n, _ in bb.named_parameters() if adapter.owns(n)}
    assert owned and {n for n, p in bb.named_parameters() if p.requires_grad} == owned
    assert parameter_report(bb)["trainable"] == sum(p.numel() for n, p in bb.named_parameters() if n in owned)
    x = images()
    bb.dense(x).square().mean().backward()
    assert all(p.grad is not None for n, p in bb.named_parameters() if n in owned)
    with torch.no_grad():
        for n, p in bb.named_parameters():
            if n in owned:
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
        expected = bb.dense(x)
    save_adapter(bb, adapter, tmp_path)
    other = fresh(key)
    loaded = load_adapter(other, tmp_path)
    with torch.no_grad():
        assert torch.equal(other.dense(x), expected)
        if method in MERGEABLE:
            merge_adapter(other, loaded)
            torch.testing.assert_close(other.dense(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("key, method, message", [
    ("convnext", "lora_qv", "no attention, so no q and v"), ("convnext", "vpt", "Use lora, ssf"),
    ("swin", "vpt", "hierarchical model"), ("resnet", "vpt", "Use lora or bitfit"),
    ("resnet", "ssf", "convolution-only block.*use lora"), ("resnet", "lora_qv", "no attention"),
    ("convnext_conv_mlp", "adaptformer", "convolutional"), ("convnext_conv_mlp", "ssf", "Conv2d"),
])
def test_methods_that_cannot_apply_say_why(key, method, message):
    with pytest.raises(ConfigError, match=message):
        apply_adapter(fresh(key), method)


def test_swin_is_built_for_any_input_size():
    name, kwargs = MODELS["swin"]
    assert timm.create_model(name, num_classes=0, **kwargs).patch_embed.strict_img_size
    assert _prototype("swin").dense(images((96, 160))).shape == (2, 192, 3, 5)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from umgkit.data.synth import generate_world

    root = tmp_path_factory.mktemp("stage_world")
    generate_world(root, num=10, size=64, progress=False)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("task, root", [("semantic", "ade"), ("panoptic", "coco"), ("detection", "coco")])
@pytest.mark.parametrize("name", ["convnext_atto", "swin_tiny_patch4_window7_224"])
def test_dense_heads_train_on_stages(world, tmp_path, name, task, root):
    out = tmp_path / "run"
    assert main(["train", str(DEMO / f"{task}.yaml"), f"output_dir={out}", "data.synthetic.out=",
                 f"data.root={world / root}", f"model.backbone=timm:{name}", "model.adapter=lora",
                 "model.adapter_options.rank=2", "model.head_options.classifier=learned", "train.max_steps=2",
                 "train.log_every=1", "train.progress=false", "data.batch_size=2"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss" in r] == [1, 2]
    assert json.loads((out / "model" / "model.json").read_text())["complete"]
