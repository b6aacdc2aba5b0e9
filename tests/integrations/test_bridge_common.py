"""The framework-free core of the detectron2 / mmseg bridges: input re-normalisation, the adapted
pyramid's shapes and trainable set, the checkpoints both bridges write through the engine's writer (and
resume from, Adam's moments included), and adapter export (no framework needed)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from umgkit.adapters import load_adapter
from umgkit.backbones import create_backbone
from umgkit.engine.checkpoint import checkpoint_problem, latest_checkpoint
from umgkit.errors import CheckpointError
from umgkit.integrations._checkpoint import load_training_state, resumable_checkpoint, save_training_state
from umgkit.integrations._common import AdaptedPyramid, InputRenormalizer

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


def _optimizer(net: torch.nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.05)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1.0 / (1 + it))


def _train(net, opt, sched, steps: range) -> None:
    """One AdamW step per index on a fixed input for that index (the same in every run)."""
    net.train()
    for step in steps:
        x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        sum(f.square().mean() for f in net(x).values()).backward()
        opt.step()
        sched.step()


def _trained(net) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in net.named_parameters() if p.requires_grad}


def test_bridge_checkpoint_is_the_engines_and_resumes_adam_exactly(tmp_path):
    """The bridges' writer: the engine's files and checksummed marker, and a resume that continues as the
    unbroken run did (it needs the optimizer's moments, which the old bridge writer dropped)."""
    root = tmp_path / "checkpoints"
    net = _pyramid()
    opt, sched = _optimizer(net)
    _train(net, opt, sched, range(2))
    out = save_training_state(root, 2, model=net, optimizer=opt,
                              scheduler_state={"scheduler": sched.state_dict()}, trainer_state={"epoch": 0},
                              info=net.info, export_adapter=net.export_adapter)
    assert out == root / "step_0000002" and latest_checkpoint(root) == out
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter", "complete", "optimizer.json", "optimizer.safetensors", "scheduler.json",
        "trainable.safetensors", "trainer_state.json", "umgkit_model.json"]
    assert checkpoint_problem(out) is None
    sums = json.loads((out / "complete").read_text())["sha256"]
    assert set(sums) == {"optimizer.json", "optimizer.safetensors", "scheduler.json", "trainable.safetensors",
                         "trainer_state.json", "umgkit_model.json"}
    assert set(load_file(out / "trainable.safetensors")) == _trainable(net)  # nothing frozen is written
    moments = load_file(out / "optimizer.safetensors")
    assert len([k for k in moments if k.endswith(".exp_avg_sq")]) == len(_trainable(net))
    assert json.loads((out / "umgkit_model.json").read_text())["adapter"] == "lora_qv"
    _train(net, opt, sched, range(2, 4))
    unbroken = _trained(net)

    resumed = _pyramid(adapter_options={"rank": 2})
    opt2, sched2 = _optimizer(resumed)
    schedules, state = load_training_state(resumed_from := resumable_checkpoint(root), model=resumed,
                                           optimizer=opt2)
    assert resumed_from == out and state == {"epoch": 0, "step": 2}
    sched2.load_state_dict(schedules["scheduler"])
    _train(resumed, opt2, sched2, range(2, 4))
    got = _trained(resumed)
    assert all(torch.equal(got[n], unbroken[n]) for n in unbroken)

    weights_only = _pyramid()  # the same weights with fresh Adam moments drift away: the test can tell
    opt3, sched3 = _optimizer(weights_only)
    load_training_state(out, model=weights_only)
    sched3.load_state_dict(schedules["scheduler"])
    _train(weights_only, opt3, sched3, range(2, 4))
    assert not all(torch.equal(p, unbroken[n]) for n, p in _trained(weights_only).items())


def test_bridge_checkpoint_keep_last_resave_and_refusals(tmp_path):
    root = tmp_path / "checkpoints"
    net = _pyramid()
    opt, sched = _optimizer(net)
    for step in (1, 2, 3):
        _train(net, opt, sched, range(step - 1, step))
        save_training_state(root, step, model=net, optimizer=opt, scheduler_state={}, keep_last=2)
    assert sorted(p.name for p in root.iterdir()) == ["step_0000002", "step_0000003"]
    save_training_state(root, 3, model=net, optimizer=opt, scheduler_state={}, keep_last=2)  # saved again
    assert sorted(p.name for p in root.iterdir()) == ["step_0000002", "step_0000003"]

    with pytest.raises(CheckpointError, match="does not fit the model"):
        load_training_state(root / "step_0000003", model=_pyramid(adapter="bitfit", adapter_options={}))
    data = (root / "step_0000003" / "optimizer.safetensors").read_bytes()
    (root / "step_0000003" / "optimizer.safetensors").write_bytes(data[:-8] + bytes(8))
    with pytest.raises(CheckpointError, match="optimizer.safetensors does not match the checksum"):
        load_training_state(root / "step_0000003", model=_pyramid(), optimizer=_optimizer(_pyramid())[0])
    assert resumable_checkpoint(root) == root / "step_0000002"  # the damaged newer step is passed over
    frozen = _pyramid()
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        save_training_state(root, 4, model=frozen, optimizer=opt, scheduler_state={})


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
