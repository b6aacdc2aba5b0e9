"""peft's LoRA family on the convolutions of CNN backbones (timm ResNets, open_clip's ModifiedResNet towers),
built as a user builds them (`create_backbone(name)`): exact counts, merge, save / load, peft's loader.

timm initialises the last BatchNorm of each residual branch to zero (``zero_init_last``), so a randomly
initialised ResNet ignores every adapted convolution; `_like_trained` gives the frozen BatchNorms
non-zero scales, as pretrained weights have, before any output is compared.
"""

from __future__ import annotations

import copy
import functools
import re

import peft
import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file
from torch import nn

from umgkit.adapters import apply_adapter, load_adapter, merge_adapter, parameter_report, save_adapter
from umgkit.backbones import create_backbone

R = 4
PEFT_METHODS = ["lora", "dora", "loha", "lokr"]


def _like_trained(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    return model


@functools.cache
def _prototype(name: str) -> nn.Module:
    torch.manual_seed(0)
    return _like_trained(create_backbone(name).eval())


def build(name: str) -> nn.Module:
    return copy.deepcopy(_prototype(name))


def _dense(model, x):
    return model.dense(x)


def _image(model, x):
    return model.encode_image(x)


# (name, forward, block-convolution pattern): the tiny open_clip ModifiedResNet keeps the tests fast; RN50
# itself runs in test_default_backbones.py.
CNNS = [pytest.param("timm:resnet18", _dense, r"model\.layer\d\.\d+\.conv\d", id="timm-resnet18"),
        pytest.param("openclip:umgkit-tiny-rn", _image, r"model\.visual\.layer\d\.\d+\.conv\d",
                     id="openclip-rn")]


def images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def perturb(model, adapter) -> None:
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if adapter.owns(name):
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def _block_convs(model: nn.Module, pattern: str) -> list[nn.Conv2d]:
    """The residual branches' convolutions (not the shortcut's projection), found by name in the test."""
    return [m for n, m in model.named_modules() if re.fullmatch(pattern, n)]


def _expected(method: str, convs: list[nn.Conv2d]) -> int:
    """peft's parameter count per conv: LoRA ``A: Conv2d(in, r, k)`` + ``B: Conv2d(r, out, 1)``; DoRA adds
    one magnitude per output channel; LoHa has two such (w_a: out x r, w_b: r x in*k*k) pairs."""
    total = 0
    for conv in convs:
        k = conv.kernel_size[0] * conv.kernel_size[1]
        lora = R * conv.in_channels * k + conv.out_channels * R
        total += {"lora": lora, "dora": lora + conv.out_channels, "loha": 2 * lora}[method]
    return total


def test_resnet18_lora_count_by_hand():
    # 4 stages x 2 BasicBlocks x 2 3x3 convs: sum of 4*(in*9) + out*4 over the 16 convs
    model = build("timm:resnet18")
    apply_adapter(model, "lora", rank=R)
    assert parameter_report(model)["trainable"] == 137_472


@pytest.mark.parametrize("name, forward, pattern", CNNS)
@pytest.mark.parametrize("method", ["lora", "dora", "loha"])
def test_exact_counts_on_block_convolutions(name, forward, pattern, method):
    model = build(name)
    convs = _block_convs(model, pattern)
    total = parameter_report(model)["total"]
    adapter = apply_adapter(model, method, rank=R)
    expected = _expected(method, convs)
    report = parameter_report(model)
    assert report["trainable"] == expected and report["total"] == total + expected
    wrapped = {n.rsplit(".", 1)[0] for n, _ in model.named_parameters() if adapter.owns(n)}
    assert wrapped and all(re.match(pattern, n) for n in wrapped)  # block convs only: no shortcut, no text


def test_lokr_count_on_a_3x3_conv():
    # 64 -> 64, 3x3, r=4: peft factorises 64 = 8 * 8; w1 is 8x8 (64) and, since r >= 8/2, w2 is a full
    # 8x8x3x3 (576) rather than a rank-4 pair.
    model = build("timm:resnet18")
    adapter = apply_adapter(model, "lokr", rank=R)
    prefix = "model.layer1.0.conv2."
    owned = [p for n, p in model.named_parameters() if n.startswith(prefix) and adapter.owns(n)]
    assert sum(p.numel() for p in owned) == 640


@pytest.mark.parametrize("name, forward, pattern", CNNS)
@pytest.mark.parametrize("method", PEFT_METHODS)
def test_conv_adapter_changes_output_and_merges(name, forward, pattern, method):
    x = images()
    plain = forward(build(name), x)
    model = build(name)
    adapter = apply_adapter(model, method, rank=R)
    torch.testing.assert_close(forward(model, x), plain, atol=1e-6, rtol=1e-6)  # starts as the frozen model
    perturb(model, adapter)
    expected = forward(model, x)
    assert (expected - plain).abs().max() > 1e-3  # the adapted convolutions are on the forward path
    merged = merge_adapter(model, adapter)
    torch.testing.assert_close(forward(merged, x), expected, atol=1e-5, rtol=1e-5)
    assert not [n for n, m in merged.named_modules() if isinstance(m, BaseTunerLayer)]
    assert set(merged.state_dict()) == set(build(name).state_dict())


@pytest.mark.parametrize("name, forward, pattern", CNNS)
@pytest.mark.parametrize("method", PEFT_METHODS)
def test_conv_adapter_save_load_bit_exact_and_peft_loads_it(tmp_path, name, forward, pattern, method):
    model = build(name)
    adapter = apply_adapter(model, method, rank=R)
    perturb(model, adapter)
    x = images()
    expected = forward(model, x)
    save_adapter(model, adapter, tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert all(k.startswith("base_model.model.") for k in saved)
    assert sum(t.numel() for t in saved.values()) == parameter_report(model)["trainable"]

    fresh = build(name)
    loaded = load_adapter(fresh, tmp_path)
    assert torch.equal(forward(fresh, x), expected)
    for key, value in loaded.adapter_state_dict(fresh).items():
        assert torch.equal(value, saved[key]), key

    peft_model = peft.PeftModel.from_pretrained(build(name), str(tmp_path))
    torch.testing.assert_close(forward(peft_model.base_model.model, x), expected, atol=1e-6, rtol=1e-6)


def test_conv_lora_trains_only_its_factors():
    model = build("timm:resnet18")
    adapter = apply_adapter(model, "lora", rank=R)
    perturb(model, adapter)
    model.dense(images()).square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(adapter.owns(n) for n in grads)
    assert all(g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)


def test_docs_default_targets_example_runs(capsys):
    """docs/adapters.md's conv LoRA example runs as printed and prints the count it claims."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "adapters.md").read_text()
    section = text[text.index("## Default targets"):text.index("## The adapter of a training run")]
    start = section.index("```python") + len("```python")
    code = section[start:section.index("```\n", start)]
    torch.manual_seed(0)
    exec(compile(code, "docs/adapters.md", "exec"), {})
    assert capsys.readouterr().out.split() == ["137472"]


@pytest.mark.parametrize("method", PEFT_METHODS)
def test_grouped_convolutions_are_refused_naming_the_dense_layers(method):
    from umgkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"stages\.0\.blocks\.0\.conv_dw is a grouped convolution "
                                          r"\(groups=96.*mlp\.fc1, mlp\.fc2"):
        apply_adapter(create_backbone("timm:convnext_tiny"), method, rank=4, target_modules=["conv_dw"])
