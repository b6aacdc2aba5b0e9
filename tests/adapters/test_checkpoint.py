"""Save -> load is bit-exact; merge matches unmerged outputs and leaves no adapter module; umgkit's LoRA
checkpoints load with plain ``peft.PeftModel.from_pretrained``."""

from __future__ import annotations

import json

import peft
import pytest
import torch
from adapter_cases import BACKBONES, MERGEABLE, images, method_params, perturb_adapter
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file

from umgkit.adapters import apply_adapter, load_adapter, merge_adapter, save_adapter
from umgkit.adapters._base import AdapterWrapper


@pytest.mark.parametrize("build, forward", BACKBONES)
@pytest.mark.parametrize("method, options", method_params())
def test_save_load_round_trip_is_bit_exact(tmp_path, build, forward, method, options):
    model = build()
    adapter = apply_adapter(model, method, **options)
    perturb_adapter(model, adapter)
    x = images()
    expected = forward(model, x)
    save_adapter(model, adapter, tmp_path)

    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert sum(t.numel() for t in saved.values()) == sum(
        p.numel() for n, p in model.named_parameters() if adapter.owns(n))

    fresh = build()
    loaded = load_adapter(fresh, tmp_path)
    assert loaded.method == method and loaded.options == adapter.options
    assert torch.equal(forward(fresh, x), expected)
    for key, value in loaded.adapter_state_dict(fresh).items():
        assert torch.equal(value, adapter.adapter_state_dict(model)[key]), key


@pytest.mark.parametrize("build, forward", BACKBONES)
@pytest.mark.parametrize("method, options", method_params(MERGEABLE))
def test_merge_matches_and_removes_adapter_modules(build, forward, method, options):
    reference_keys = set(build().state_dict())
    model = build()
    adapter = apply_adapter(model, method, **options)
    perturb_adapter(model, adapter)
    x = images()
    expected = forward(model, x)
    merged = merge_adapter(model, adapter)
    assert merged is model
    torch.testing.assert_close(forward(merged, x), expected, atol=1e-5, rtol=1e-5)
    assert not [n for n, m in merged.named_modules() if isinstance(m, (AdapterWrapper, BaseTunerLayer))]
    assert set(merged.state_dict()) == reference_keys  # same layout as the plain backbone


@pytest.mark.parametrize("method, options", method_params({"adaptformer", "adapter", "vpt"}))
def test_non_mergeable_methods_refuse_to_merge(method, options):
    from adapter_cases import tiny_timm

    model = tiny_timm()
    adapter = apply_adapter(model, method, **options)
    with pytest.raises(NotImplementedError, match="cannot be merged"):
        merge_adapter(model, adapter)


PEFT_CASES = [pytest.param(build, forward, method, options, id=f"{p.id}-{m.id}")
              for p in BACKBONES for m in method_params({"lora", "dora", "loha", "lokr"})
              for build, forward in [p.values] for method, options in [m.values]
              if not (p.id == "openclip" and method == "lora")]  # MHA target: see the test below
PEFT_CASES.append(pytest.param(*BACKBONES[1].values, "lora", {"rank": 4, "target_modules": ["mlp.c_fc"]},
                               id="openclip-lora-mlp"))


def _peft_output(tmp_path, build, forward, x):
    peft_model = peft.PeftModel.from_pretrained(build(), str(tmp_path))
    return forward(peft_model.base_model.model, x)


@pytest.mark.parametrize("build, forward, method, options", PEFT_CASES)
def test_peft_loads_umgkit_lora_checkpoints(tmp_path, build, forward, method, options):
    model = build()
    adapter = apply_adapter(model, method, **options)
    perturb_adapter(model, adapter)
    x = images()
    expected = forward(model, x)
    save_adapter(model, adapter, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] in {"LORA", "LOHA", "LOKR"}
    torch.testing.assert_close(_peft_output(tmp_path, build, forward, x), expected, atol=1e-6, rtol=1e-6)


def test_peft_loads_umgkit_lora_on_multihead_attention(tmp_path):
    """peft loads LoRA-on-nn.MultiheadAttention checkpoints; its forward either matches umgkit (once peft
    fixes the out_proj delta being applied twice, huggingface/peft PR 3774) or equals umgkit's output
    with the out-projection update doubled (the known bug), nothing else."""
    build, forward = BACKBONES[1].values
    model = build()
    adapter = apply_adapter(model, "lora", rank=4)
    perturb_adapter(model, adapter)
    x = images()
    expected = forward(model, x)
    save_adapter(model, adapter, tmp_path)
    got = _peft_output(tmp_path, build, forward, x)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("out_proj.lora_B.default.weight"):
                p.mul_(2)
    doubled = forward(model, x)
    assert torch.allclose(got, expected, atol=1e-6) or torch.allclose(got, doubled, atol=1e-6)
    assert not torch.allclose(expected, doubled, atol=1e-3)  # the two cases are distinguishable


def test_save_writes_only_adapter_weights(tmp_path):
    from adapter_cases import tiny_timm

    model = tiny_timm()
    adapter = apply_adapter(model, "bitfit")
    save_adapter(model, adapter, tmp_path)
    keys = set(load_file(tmp_path / "adapter_model.safetensors"))
    assert keys and all(k.endswith("bias") for k in keys)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["method"] == "bitfit" and config["options"]["scope"] == "blocks"


def test_load_from_missing_directory_names_the_file(tmp_path):
    from adapter_cases import tiny_timm

    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors"):
        load_adapter(tiny_timm(), tmp_path)
