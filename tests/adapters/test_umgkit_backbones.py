"""Every adapter on umgkit's Backbone wrappers (the ViT sits under an attribute and is found structurally):
trains only its own parameters, round-trips through save/load, and merges where the maths allows."""

from __future__ import annotations

import functools

import pytest
import torch
from adapter_cases import (
    MERGEABLE,
    UMGKIT_BACKBONES,
    images,
    method_params,
    perturb_adapter,
)

from umgkit.adapters import apply_adapter, load_adapter, merge_adapter, parameter_report, save_adapter

# umgkit's own ViT runs every method; the open_clip / timm wrappers (whose raw models run the full tables in
# the other files) run one method of each kind, to check that blocks are found under the wrapper.
WRAPPER_METHODS = {"lora", "lora_qv", "adaptformer", "vpt", "ssf", "bitfit"}
# rotary embeddings cover image tokens only: VPT is a clear error there (tested below)
REFUSED = {("umgkit-timm-eva", "vpt"), ("umgkit-timm-eva-separate-qkv", "vpt"),
           ("umgkit-openclip-eva02", "vpt")}
CASES = [pytest.param(*b.values, *m.values, id=f"{b.id}-{m.id}")
         for b in UMGKIT_BACKBONES for m in method_params(None if b.id == "umg" else WRAPPER_METHODS)
         if (b.id, m.values[0]) not in REFUSED]


def test_vpt_on_rotary_embedding_blocks_is_refused_with_alternatives():
    from adapter_cases import umgkit_timm_eva

    from umgkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"rotary position embeddings .* Use lora, lora_qv, ssf"):
        apply_adapter(umgkit_timm_eva(), "vpt", num_tokens=2)


@pytest.mark.parametrize("build, forward, method, options", CASES)
def test_adapter_on_umgkit_backbone(tmp_path, build, forward, method, options):
    model = build()
    adapter = apply_adapter(model, method, **options)
    owned = {n for n, _ in model.named_parameters() if adapter.owns(n)}
    assert owned and {n for n, p in model.named_parameters() if p.requires_grad} == owned
    assert parameter_report(model)["trainable"] == sum(
        p.numel() for n, p in model.named_parameters() if n in owned)

    x = images()
    loss = forward(model, x).square().mean()
    loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n not in owned)

    perturb_adapter(model, adapter)
    expected = forward(model, x).detach()
    save_adapter(model, adapter, tmp_path)
    fresh = build()
    loaded = load_adapter(fresh, tmp_path)
    assert torch.equal(forward(fresh, x), expected)

    if method in MERGEABLE:
        merge_adapter(fresh, loaded)
        torch.testing.assert_close(forward(fresh, x), expected, atol=1e-5, rtol=1e-5)
        merged, plain = set(fresh.state_dict()), _plain_keys(build)
        # SSF's shift becomes the bias of a layer that had none (EVA's qkv keeps its q/v biases apart)
        assert plain <= merged and all(k.endswith(".bias") and k[:-5] + ".weight" in plain
                                       for k in merged - plain), sorted(merged - plain)


@functools.cache
def _plain_keys(build) -> set[str]:
    return set(build().state_dict())


def test_separate_qkv_blocks_get_lora_on_their_own_projections():
    """EVA built with q_proj / k_proj / v_proj (as open_clip builds EVA02-CLIP): LoRA wraps the three
    projections and the output projection; lora_qv updates q and v only; exact counts."""
    from adapter_cases import umgkit_timm_eva_separate

    c, r, blocks = 192, 4, 2
    model = umgkit_timm_eva_separate()
    adapter = apply_adapter(model, "lora", rank=r)
    wrapped = {n.split(".lora_")[0].split("blocks.0.", 1)[-1] for n, _ in model.named_parameters()
               if adapter.owns(n) and ".blocks.0." in n}
    assert wrapped == {"attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.proj"}
    assert parameter_report(model)["trainable"] == blocks * 4 * (r * c + c * r)

    model = umgkit_timm_eva_separate()
    apply_adapter(model, "lora_qv", rank=r)
    assert parameter_report(model)["trainable"] == blocks * 4 * r * c
    attn = model.model.blocks[0].attn
    with torch.no_grad():
        attn.lora_qv_B_q.normal_()
        attn.lora_qv_B_v.normal_()
    updated = attn._updated()  # the weights the attention runs with; k_proj keeps its frozen weight
    assert set(updated) == {"q_proj.weight", "v_proj.weight"}
    assert not torch.equal(updated["q_proj.weight"], attn.base_layer.q_proj.weight)
    assert not torch.equal(updated["v_proj.weight"], attn.base_layer.v_proj.weight)
