"""The framework-free core of the detectron2 / mmseg bridges: input re-normalisation, the adapted
pyramid's shapes and trainable set, trainable-only checkpoints and adapter export (no framework needed)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from umgkit.adapters import load_adapter
from umgkit.backbones import create_backbone
from umgkit.engine.checkpoint import latest_checkpoint
from umgkit.integrations._common import AdaptedPyramid, InputRenormalizer, load_trainable, save_trainable

D2_BGR_MEAN, D2_BGR_STD = [103.53, 116.28, 123.675], [1.0, 1.0, 1.0]  # detectron2's defaults (BGR, 0-255)


def _pyramid(**kw) -> AdaptedPyramid:
    torch.manual_seed(0)
    opts = dict(backbone="umg:tiny", adapter="lora_qv", adapter_options={"rank": 2}, out_channels=16)
    return AdaptedPyramid(**{**opts, **kw})


def _trainable(model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_renormalizer_maps_framework_normalisation_to_the_backbones():
    bb = create_backbone("umg:tiny")
    rgb = torch.rand(2, 3, 8, 8) * 255
    mean_b = torch.tensor(bb.image_mean).view(1, 3, 1, 1)
    std_b = torch.tensor(bb.image_std).view(1, 3, 1, 1)
    want = (rgb / 255 - mean_b) / std_b
    bgr_in = rgb.flip(1) - torch.tensor(D2_BGR_MEAN).view(1, 3, 1, 1)  # std is 1
    renorm = InputRenormalizer(pixel_mean=D2_BGR_MEAN, pixel_std=D2_BGR_STD, bgr=True,
                               image_mean=bb.image_mean, image_std=bb.image_std)
    assert not renorm.identity
    torch.testing.assert_close(renorm(bgr_in), want, rtol=1e-5, atol=1e-4)

    same = InputRenormalizer(pixel_mean=[255 * m for m in bb.image_mean],
                             pixel_std=[255 * s for s in bb.image_std], bgr=False,
                             image_mean=bb.image_mean, image_std=bb.image_std)
    assert same.identity and same(want) is want
    with pytest.raises(ValueError, match="3 values"):
        InputRenormalizer(pixel_mean=[0.0], pixel_std=[1.0], bgr=False, image_mean=bb.image_mean,
                          image_std=bb.image_std)


def test_pyramid_levels_have_their_nominal_strides():
    net = _pyramid()
    assert net.size_divisibility == 64  # lcm(patch 8, stride of p6)
    assert net.strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    feats = net(torch.randn(2, 3, 128, 192))
    for key, stride in net.strides.items():
        assert feats[key].shape == (2, 16, 128 // stride, 192 // stride), key
    assert set(_pyramid(with_p6=False)(torch.randn(1, 3, 64, 64))) == {"p2", "p3", "p4", "p5"}


def test_only_adapter_and_neck_are_trainable_and_receive_gradients():
    net = _pyramid()
    adapter_names = {n for n, _ in net.named_parameters()
                     if n.startswith("backbone.") and net.adapter.owns(n[len("backbone."):])}
    neck_names = {n for n, _ in net.named_parameters() if n.startswith("neck.")}
    assert adapter_names and neck_names
    assert _trainable(net) == adapter_names | neck_names
    net.train()
    sum(f.square().mean() for f in net(torch.randn(2, 3, 64, 64)).values()).backward()
    got_grad = {n for n, p in net.named_parameters() if p.grad is not None}
    assert got_grad == adapter_names | neck_names
    assert any(net.get_parameter(n).grad.abs().sum() > 0 for n in adapter_names)
    assert not net.backbone.blocks[0].training  # the frozen trunk stays in eval mode


def test_trainable_checkpoint_round_trip_and_mismatch(tmp_path):
    net = _pyramid()
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))
    out = save_trainable(net, tmp_path / "checkpoints" / "step_0000007", step=7, info=net.info)
    assert latest_checkpoint(tmp_path / "checkpoints") == out
    saved = load_file(out / "trainable.safetensors")
    assert set(saved) == _trainable(net)  # nothing frozen is written

    fresh = _pyramid()
    assert load_trainable(fresh, out) == {"step": 7}
    for name in _trainable(net):
        assert torch.equal(fresh.get_parameter(name), net.get_parameter(name)), name

    with pytest.raises(ValueError, match="does not fit the model"):
        load_trainable(_pyramid(adapter="bitfit", adapter_options={}), out)
    (out / "complete").unlink()
    with pytest.raises(FileNotFoundError, match="not a complete"):
        load_trainable(fresh, out)


def test_exported_adapter_loads_on_a_plain_backbone(tmp_path):
    net = _pyramid()
    with torch.no_grad():
        for n, p in net.backbone.named_parameters():
            if net.adapter.owns(n):
                p.add_(0.1)
    net.export_adapter(tmp_path / "adapter")
    plain = create_backbone("umg:tiny")
    loaded = load_adapter(plain, tmp_path / "adapter")
    assert loaded.method == "lora_qv" and loaded.options["rank"] == 2
    mine = net.adapter.adapter_state_dict(net.backbone)
    theirs = loaded.adapter_state_dict(plain)
    assert set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
