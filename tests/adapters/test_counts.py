"""Exact, closed-form trainable-parameter counts on ViT-B/16 (width 768, 12 blocks, MLP 3072).

The models are built on the ``meta`` device: counting needs shapes only, so the three ViT-B/16s cost
no memory or init time. Heads are excluded (timm num_classes=0; open_clip / umg towers have none).
"""

from __future__ import annotations

import copy

import open_clip
import pytest
import timm
import torch

from umgkit.adapters import apply_adapter, parameter_report
from umgkit.backbones import create_backbone

C, L, R = 768, 12, 8
BOTTLENECK = L * (C * 8 + 8 + 8 * C + C)

# (method, options, expected trainable parameters) on every ViT-B/16
COUNTS = [
    ("lora_qv", {"rank": R}, L * 4 * R * C),  # 294,912
    ("adaptformer", {"bottleneck": 8}, BOTTLENECK),  # 156,768
    ("vpt", {"num_tokens": 10, "deep": True}, L * 10 * C),  # 92,160
    ("vpt", {"num_tokens": 10}, 10 * C),
    ("lora", {"rank": R}, L * (R * C + 3 * C * R + R * C + C * R)),  # qkv / in_proj + proj: 442,368
    ("adapter", {"bottleneck": 8}, BOTTLENECK),
    ("ssf", {}, L * 2 * (C + 3 * C + C + C + 4 * C + C)),  # after norm1, qkv, proj, norm2, fc1, fc2
    ("frozen", {}, 0),
]
assert COUNTS[0][2] == 294_912 and COUNTS[1][2] == 156_768 and COUNTS[2][2] == 92_160
assert COUNTS[4][2] == 442_368


def _timm():
    return timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)


def _openclip():
    return open_clip.create_model("ViT-B-16", pretrained=None, device="meta")


def _umg():
    return create_backbone("umg:base16")


MODELS = [pytest.param(_timm, id="timm"), pytest.param(_openclip, id="openclip"),
          pytest.param(_umg, id="umg")]
_BUILT: dict = {}


def _meta_model(build):
    if build not in _BUILT:
        with torch.device("meta"):
            _BUILT[build] = build()
    return copy.deepcopy(_BUILT[build])


def _ids(table):
    return [f"{m}-{'-'.join(map(str, o.values())) or 'default'}" for m, o, _ in table]


@pytest.mark.parametrize("build", MODELS)
@pytest.mark.parametrize("method, options, expected", COUNTS, ids=_ids(COUNTS))
def test_vit_b16_counts(build, method, options, expected):
    model = _meta_model(build)
    total_before = parameter_report(model)["total"]
    apply_adapter(model, method, **options)
    report = parameter_report(model)
    assert report["trainable"] == expected
    assert report["total"] == total_before + expected
    assert report["percent"] == pytest.approx(100 * expected / report["total"])


def test_timm_vit_b16_bitfit_counts_existing_biases():
    model = _meta_model(_timm)
    total = parameter_report(model)["total"]
    apply_adapter(model, "bitfit")
    report = parameter_report(model)
    assert report["trainable"] == L * (C + 3 * C + C + C + 4 * C + C)  # norm1, qkv, proj, norm2, fc1, fc2
    assert report["total"] == total == 85_798_656


def test_openclip_vision_tower_only_by_default():
    model = _meta_model(_openclip)
    apply_adapter(model, "lora", rank=R)
    modules = parameter_report(model)["modules"]
    assert modules["visual"]["trainable"] == 442_368
    assert modules["transformer"]["trainable"] == 0  # the text tower stays frozen
