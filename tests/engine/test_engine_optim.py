"""Optimizer groups and the warmup + cosine schedule, against hand-computed values."""

import math

import pytest
import torch
from torch import nn

from umgkit.engine import build_optimizer, build_scheduler, param_groups, warmup_cosine


def _model() -> nn.Module:
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    model[0].requires_grad_(False)  # a frozen "backbone" layer
    return model


def test_groups_decay_only_trainable_matrices():
    groups = param_groups(_model(), weight_decay=0.05)
    assert groups[0]["names"] == ["2.weight"] and groups[0]["weight_decay"] == 0.05
    assert groups[1]["names"] == ["1.weight", "1.bias", "2.bias"] and groups[1]["weight_decay"] == 0.0


def test_groups_honour_no_weight_decay_and_reject_all_frozen():
    model = _model()
    model.no_weight_decay = lambda: {"2.weight"}
    assert param_groups(model, 0.1)[0]["names"] == []
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(nn.Linear(2, 2).requires_grad_(False), 0.1)


def test_optimizer_holds_trainable_params_only():
    opt = build_optimizer(_model(), lr=1e-3, weight_decay=0.05, betas=(0.9, 0.95))
    assert sum(len(g["params"]) for g in opt.param_groups) == 4
    assert opt.defaults["betas"] == (0.9, 0.95)


def test_warmup_cosine_values():
    f = lambda s, m=0.0: warmup_cosine(s, total_steps=10, warmup_steps=2, min_lr_ratio=m)  # noqa: E731
    assert f(0) == pytest.approx(0.5)  # (0 + 1) / 2
    assert f(1) == pytest.approx(1.0)
    assert f(2) == pytest.approx(1.0)  # cosine starts at its peak
    assert f(6) == pytest.approx(0.5)  # halfway through the 8 cosine steps
    assert f(4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert f(10) == pytest.approx(0.0)
    assert f(10, 0.2) == pytest.approx(0.2)
    assert f(6, 0.2) == pytest.approx(0.2 + 0.8 * 0.5)


def test_scheduler_steps_once_per_update():
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=0.1)
    sched = build_scheduler(opt, total_steps=10, warmup_steps=2, min_lr_ratio=0.0)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.05) and lrs[1] == pytest.approx(0.1) and lrs[6] == pytest.approx(0.05)
    assert lrs[9] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))
