"""`model.adapter=lora` on the backbones users name, built by `build_model` from a config with default
backbone options (random weights, nothing downloaded): the issue's acceptance for EVA02-CLIP (separate
q / k / v projections) and for CNNs (LoRA on convolutions).

Each case checks the exact LoRA parameter count (rank 8), which layers were wrapped, that only the LoRA
factors and the head train, save / load bit-exactness through the Adapter API, and merge equivalence.
"""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from umgkit.adapters import merge_adapter, save_adapter
from umgkit.config import config_from_dict
from umgkit.models import build_model

pytestmark = pytest.mark.slow

R = 8  # LoRA's default rank


def _convnext_tiny_count() -> int:
    # each block's mlp.fc1 (C -> 4C) and mlp.fc2 (4C -> C): r*C + 4C*r + r*4C + C*r = 10*C*r
    return sum(n * 10 * c * R for n, c in zip((3, 3, 9, 3), (96, 192, 384, 768), strict=True))


# (backbone, block-relative pattern every LoRA-wrapped layer matches, expected LoRA parameters or None
# when counted from the convolutions themselves)
CASES = [
    pytest.param("openclip:EVA02-B-16",
                 r"model\.visual\.trunk\.blocks\.\d+\.attn\.(q_proj|k_proj|v_proj|proj)",
                 12 * 4 * (R * 768 + 768 * R), id="eva02-b-16"),  # 589,824
    pytest.param("openclip:RN50", r"model\.visual\.layer\d\.\d+\.conv[123]", None, id="rn50"),
    pytest.param("timm:resnet18", r"model\.layer\d\.\d+\.conv[12]", 2 * 137_472, id="resnet18"),
    pytest.param("timm:convnext_tiny", r"model\.stages\.\d\.blocks\.\d+\.mlp\.fc[12]",
                 _convnext_tiny_count(), id="convnext-tiny"),  # 529,920
]


def _build(name: str):
    cfg = config_from_dict({"task": "classification", "data": {"image_size": 64},
                            "model": {"backbone": name, "adapter": "lora", "head": "linear"}})
    model = build_model(cfg, class_names=["circle", "square"]).eval()
    with torch.no_grad():  # as pretrained weights: timm zero-initialises each branch's last BatchNorm
        for m in model.backbone.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
    return model


def _conv_count(model: nn.Module, pattern: str) -> int:
    total = 0
    for name, m in model.named_modules():
        if re.fullmatch(pattern + r"\.base_layer", name):
            k = m.kernel_size[0] * m.kernel_size[1]
            total += R * m.in_channels * k + m.out_channels * R
    return total


@pytest.mark.parametrize("name, pattern, expected", CASES)
def test_lora_with_default_options(tmp_path, name, pattern, expected):
    model = _build(name)
    backbone, adapter = model.backbone, model.adapter
    assert adapter.method == "lora"
    owned = {n for n, _ in backbone.named_parameters() if adapter.owns(n)}
    wrapped = {re.sub(r"\.lora_[AB]\.default\.weight$", "", n) for n in owned}
    assert wrapped and all(re.fullmatch(pattern, w) for w in wrapped), sorted(wrapped)[:4]
    count = sum(p.numel() for n, p in backbone.named_parameters() if n in owned)
    assert count == (expected if expected is not None else _conv_count(backbone, pattern))
    head = {n for n, p in model.named_parameters() if not n.startswith("backbone.")}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"backbone.{n}" for n in owned} | head

    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for n, p in backbone.named_parameters():
            if n in owned:
                p.add_(0.01 * torch.randn(p.shape, generator=g))
    x = torch.randn(2, 3, 64, 64, generator=g)
    model(images=x).square().mean().backward()
    grads = {n for n, p in backbone.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and grads <= owned

    expected_out = backbone.dense(x).detach()
    save_adapter(backbone, adapter, tmp_path)
    other = _build(name)  # the same frozen weights: build_model seeds from the config
    other.adapter.load_adapter_state_dict(other.backbone, load_file(tmp_path / "adapter_model.safetensors"))
    assert torch.equal(other.backbone.dense(x), expected_out)
    merge_adapter(other.backbone, other.adapter)
    assert not [n for n, _ in other.backbone.named_parameters() if "lora_" in n]
    torch.testing.assert_close(other.backbone.dense(x), expected_out, atol=1e-4, rtol=1e-4)
