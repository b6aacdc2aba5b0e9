"""Every adapter x every tiny backbone: a few optimizer steps lower a toy loss, and only the adapter's
parameters move (every frozen parameter stays bit-identical)."""

from __future__ import annotations

import pytest
import torch
from adapter_cases import BACKBONES, images, method_params

from umgkit.adapters import apply_adapter, parameter_report


@pytest.mark.parametrize("build, forward", BACKBONES)
@pytest.mark.parametrize("method, options", method_params())
def test_training_moves_only_adapter_parameters(build, forward, method, options):
    model = build()
    adapter = apply_adapter(model, method, **options)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    owned = {n for n in before if adapter.owns(n)}
    assert owned, f"{method} owns no parameters"
    assert {n for n, p in model.named_parameters() if p.requires_grad} == owned
    assert parameter_report(model)["trainable"] == sum(before[n].numel() for n in owned)

    x = images()
    target = torch.randn_like(forward(model, x).detach(), generator=None)
    # All parameters go to the optimizer: the frozen ones must be skipped because they have no grad.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.mse_loss(forward(model, x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses

    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "no adapter parameter changed"
    assert changed <= owned, f"frozen parameters changed: {sorted(changed - owned)[:5]}"


@pytest.mark.parametrize("build, forward", BACKBONES)
def test_frozen_trains_nothing(build, forward):
    model = build()
    apply_adapter(model, "frozen")
    report = parameter_report(model)
    assert report["trainable"] == 0 and report["total"] > 0 and report["percent"] == 0.0
    assert all(v["trainable"] == 0 for v in report["modules"].values())
