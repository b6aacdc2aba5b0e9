"""Bad names and values fail with messages that name the problem and the valid choices."""

from __future__ import annotations

import pytest
from adapter_cases import tiny_openclip, tiny_timm
from torch import nn

from umgkit.adapters import apply_adapter
from umgkit.registry import ADAPTERS

ALL_METHODS = ["adapter", "adaptformer", "bitfit", "dora", "frozen", "full", "loha", "lokr", "lora",
               "lora_qv", "ssf", "vpt"]


def test_every_method_is_registered():
    assert set(ALL_METHODS) <= set(ADAPTERS.names())


@pytest.mark.parametrize("method", ALL_METHODS)
def test_unknown_option_names_the_valid_ones(method):
    with pytest.raises(ValueError, match=f"unknown option.*'{method}'.*'rnak'.*Valid options"):
        ADAPTERS.build(method, rnak=4)


@pytest.mark.parametrize("method, options, message", [
    ("lora_qv", {"rnak": 4}, "did you mean 'rank'"),
    ("lora_qv", {"rank": 0}, "rank=0 must be > 0"),
    ("lora", {"tower": "audio"}, "tower='audio' is not valid"),
    ("adapter", {"positions": ["ffn"]}, "subset of \\['mlp', 'attn'\\]"),
    ("adapter", {"activation": "tanh"}, "activation='tanh'"),
    ("bitfit", {"scope": "heads"}, "scope='heads'"),
    ("vpt", {"num_tokens": -1}, "num_tokens=-1 must be > 0"),
    ("ssf", {"target_modules": []}, "target_modules must be a non-empty list"),
])
def test_bad_values_raise_clearly(method, options, message):
    with pytest.raises(ValueError, match=message):
        ADAPTERS.build(method, **options)


def test_unknown_method_suggests_close_names():
    with pytest.raises(KeyError, match="Did you mean 'lora'"):
        apply_adapter(tiny_timm(), "lroa")


@pytest.mark.parametrize("build, method, options, message", [
    (tiny_timm, "lora_qv", {"layers": [5]}, "layers contains 5"),
    (tiny_timm, "ssf", {"target_modules": ["mlp.fc3"]}, "no submodule 'fc3'"),
    (tiny_openclip, "lora", {"target_modules": ["attn.out_proj"]}, "inside an nn.MultiheadAttention"),
    (tiny_openclip, "ssf", {"target_modules": ["mlp.gelu"]}, "SSF targets nn.Linear"),
    (tiny_openclip, "lora_qv", {"dropout": 0.1}, "set dropout=0"),
], ids=["layer-out-of-range", "missing-target", "out-proj-inside-mha", "ssf-on-activation", "qv-mha-dropout"])
def test_bad_targets_raise_clearly(build, method, options, message):
    with pytest.raises(ValueError, match=message):
        apply_adapter(build(), method, **options)


def test_model_without_blocks_is_refused():
    with pytest.raises(ValueError, match="No transformer blocks found"):
        apply_adapter(nn.Sequential(nn.Linear(4, 4)), "lora")
