"""Method-specific behaviour: which slices LoRA-qv touches, where VPT puts its prompts, towers."""

from __future__ import annotations

import pytest
import torch
from adapter_cases import images, perturb_adapter, tiny_openclip, tiny_timm, tiny_timm_reg
from open_clip.transformer import Transformer

from umgkit.adapters import apply_adapter, parameter_report
from umgkit.adapters.lora_qv import LoraQVLinear, LoraQVMultiheadAttention


def test_lora_qv_changes_q_and_v_slices_only():
    model = tiny_timm()
    apply_adapter(model, "lora_qv", rank=4)
    layer = model.blocks[0].attn.qkv
    assert isinstance(layer, LoraQVLinear)
    with torch.no_grad():
        layer.lora_qv_B_q.normal_()
        layer.lora_qv_B_v.normal_()
    x = torch.randn(2, 5, 192)
    adapted, frozen = layer(x), layer.base_layer(x)
    c = 192
    assert torch.equal(adapted[..., c:2 * c], frozen[..., c:2 * c])  # k: bit-identical
    assert not torch.allclose(adapted[..., :c], frozen[..., :c])  # q changed
    assert not torch.allclose(adapted[..., 2 * c:], frozen[..., 2 * c:])  # v changed


def test_lora_qv_on_multihead_attention_leaves_k_rows_of_in_proj():
    model = tiny_openclip()
    apply_adapter(model, "lora_qv", rank=4)
    attn = model.visual.transformer.resblocks[0].attn
    assert isinstance(attn, LoraQVMultiheadAttention)
    with torch.no_grad():
        attn.lora_qv_B_q.normal_()
        attn.lora_qv_B_v.normal_()
    delta = attn.delta_weight()
    c = attn.embed_dim
    assert torch.equal(delta[c:2 * c], torch.zeros_like(delta[c:2 * c]))
    assert delta[:c].abs().sum() > 0 and delta[2 * c:].abs().sum() > 0


@pytest.mark.parametrize("build, prefix", [(tiny_timm, 1), (tiny_timm_reg, 3), (tiny_openclip, 1)],
                         ids=["timm", "timm-reg-tokens", "openclip"])
@pytest.mark.parametrize("deep", [False, True], ids=["shallow", "deep"])
def test_vpt_inserts_prompts_after_prefix_tokens_and_strips_them(build, prefix, deep):
    model = build()
    is_timm = hasattr(model, "blocks")
    blocks = model.blocks if is_timm else model.visual.transformer.resblocks
    seen = []  # the input tokens of each block (its first norm's input), (B, L, C)
    for block in blocks:
        norm = block.norm1 if is_timm else block.ln_1
        norm.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    x = images()
    run = (lambda: model(x)) if is_timm else (lambda: model.encode_image(x))
    plain = run()
    plain_in = seen[0]
    seen.clear()

    apply_adapter(model, "vpt", num_tokens=3, deep=deep)
    out = run()
    assert out.shape == plain.shape
    assert [s.shape[1] for s in seen] == [plain_in.shape[1] + 3] * len(blocks)
    assert torch.equal(seen[0][:, :prefix], plain_in[:, :prefix])  # prefix tokens first, unchanged
    assert torch.equal(seen[0][:, prefix + 3:], plain_in[:, prefix:])  # then the patches
    for i, block in enumerate(blocks if deep else blocks[:1]):
        prompt = block.vpt_prompt.detach().expand(x.shape[0], -1, -1)
        assert torch.equal(seen[i][:, prefix:prefix + 3], prompt)  # each deep block: its own prompts


def test_vpt_features_keep_layout():
    model = tiny_timm()
    before = model.forward_features(images()).shape
    apply_adapter(model, "vpt", num_tokens=4, deep=True)
    assert model.forward_features(images()).shape == before


def test_vpt_sequence_first_and_batch_first_layouts_agree():
    torch.manual_seed(0)
    nld = Transformer(width=32, layers=2, heads=2, batch_first=True).eval()
    lnd = Transformer(width=32, layers=2, heads=2, batch_first=False).eval()
    lnd.load_state_dict(nld.state_dict())
    a = apply_adapter(nld, "vpt", num_tokens=3, deep=True)
    b = apply_adapter(lnd, "vpt", num_tokens=3, deep=True)
    b.load_adapter_state_dict(lnd, a.adapter_state_dict(nld))
    x = torch.randn(2, 5, 32)  # open_clip's Transformer takes (B, L, C) and transposes internally
    torch.testing.assert_close(lnd(x), nld(x), atol=1e-5, rtol=1e-5)


def test_text_tower_is_selectable():
    model = tiny_openclip()
    adapter = apply_adapter(model, "lora_qv", rank=2, tower="text")
    report = parameter_report(model)
    assert report["modules"]["transformer"]["trainable"] == 2 * 4 * 2 * 32
    assert report["modules"]["visual"]["trainable"] == 0
    tokens = torch.randint(0, 100, (2, 8))
    before = model.encode_text(tokens)
    perturb_adapter(model, adapter)
    assert not torch.allclose(model.encode_text(tokens), before)


def test_vpt_refuses_blocks_called_with_an_attention_mask():
    text_like = Transformer(width=32, layers=2, heads=2).eval()
    apply_adapter(text_like, "vpt", num_tokens=2)
    with pytest.raises(ValueError, match="attention mask"):
        text_like(torch.randn(2, 5, 32), attn_mask=torch.zeros(5, 5))


def test_layers_option_limits_blocks():
    model = tiny_timm()
    apply_adapter(model, "lora_qv", rank=4, layers=[-1])
    assert not isinstance(model.blocks[0].attn.qkv, LoraQVLinear)
    assert isinstance(model.blocks[1].attn.qkv, LoraQVLinear)
    assert parameter_report(model)["trainable"] == 4 * 4 * 192
