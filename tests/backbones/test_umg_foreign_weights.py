"""umg: architectures initialised from open_clip and timm weight files that the tests write themselves."""

from functools import partial

import open_clip
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from umgkit.backbones import create_backbone
from umgkit.backbones.umg import load_umg_checkpoint, save_umg_checkpoint
from umgkit.errors import WeightsError

TEXTS = ["a red circle", "two blue squares on grass", "a star"]


def _openclip_tiny(quick_gelu: bool = False, width: int = 128) -> nn.Module:
    """An open_clip CLIP with umg:tiny's sizes (heads of 32 dims: 4 heads at width 128)."""
    torch.manual_seed(0)
    model = open_clip.model.CLIP(
        embed_dim=128, quick_gelu=quick_gelu,
        vision_cfg={"image_size": 64, "patch_size": 8, "width": width, "layers": 4, "head_width": 32},
        text_cfg={"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4})
    with torch.no_grad():  # open_clip zero-initialises nothing we could miss, but make biases non-zero too
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(std=0.05)
    return model.eval()


def _save(state: dict, path) -> str:
    if str(path).endswith(".safetensors"):
        save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(path))
    else:
        torch.save({"state_dict": state}, path)
    return str(path)


def _openclip_outputs(model, images):
    with torch.no_grad():
        tokens = open_clip.tokenizer.SimpleTokenizer(context_length=32)(TEXTS)
        return F.normalize(model.encode_image(images), dim=-1), F.normalize(model.encode_text(tokens), dim=-1)


@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])
def test_openclip_file_gives_identical_embeddings(tmp_path, suffix):
    oc = _openclip_tiny()
    file = _save(oc.state_dict(), tmp_path / f"openclip{suffix}")
    images = torch.randn(2, 3, 64, 64)
    ref_image, ref_text = _openclip_outputs(oc, images)
    bb = create_backbone("umg:tiny", pretrained=file)
    with torch.no_grad():
        torch.testing.assert_close(bb.encode_image(images), ref_image, atol=2e-5, rtol=0)
        torch.testing.assert_close(bb.encode_text(TEXTS), ref_text, atol=2e-5, rtol=0)
    assert bb.config["vision"]["pre_norm"] is True  # open_clip's ln_pre
    assert bb.logit_scale.item() == pytest.approx(oc.logit_scale.item())


def test_quickgelu_suffix_matches_openai_style_models(tmp_path):
    oc = _openclip_tiny(quick_gelu=True)
    file = _save(oc.state_dict(), tmp_path / "openai_style.safetensors")
    images = torch.randn(2, 3, 64, 64)
    ref_image, _ = _openclip_outputs(oc, images)
    with torch.no_grad():
        quick = create_backbone("umg:tiny-quickgelu", pretrained=file).encode_image(images)
        plain = create_backbone("umg:tiny", pretrained=file).encode_image(images)
    torch.testing.assert_close(quick, ref_image, atol=2e-5, rtol=0)
    assert (plain - ref_image).abs().max() > 1e-3  # the activation matters: GELU is not a stand-in


def test_converted_model_round_trips_as_umg_checkpoint(tmp_path):
    file = _save(_openclip_tiny(quick_gelu=True).state_dict(), tmp_path / "oc.safetensors")
    bb = create_backbone("umg:tiny-quickgelu", pretrained=file)
    back = load_umg_checkpoint(save_umg_checkpoint(bb, tmp_path / "ckpt"))
    assert back.config["act"] == "quick_gelu" and back.config["vision"]["pre_norm"] is True
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(back.encode_image(images), bb.encode_image(images), atol=0, rtol=0)


@pytest.mark.parametrize("eps, atol", [(1e-5, 2e-5), (1e-6, 1e-3)])
def test_timm_vit_file_initialises_the_image_tower(tmp_path, eps, atol):
    """Exact with umg's LayerNorm eps (1e-5); timm's own default (1e-6) stays close."""
    torch.manual_seed(0)
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=64, patch_size=8, embed_dim=128, depth=4, num_heads=4, mlp_ratio=4.0, num_classes=10,
        global_pool="token", norm_layer=partial(nn.LayerNorm, eps=eps)).eval()
    file = _save(vit.state_dict(), tmp_path / "timm_vit.safetensors")
    torch.manual_seed(1)
    bb = create_backbone("umg:tiny", pretrained=file)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = vit.forward_features(images)[:, 1:]  # normed patch tokens
        ours = bb.dense(images).flatten(2).transpose(1, 2)
        torch.testing.assert_close(ours, ref, atol=atol, rtol=0)
        assert bb.encode_text(TEXTS).shape == (3, 128)  # text tower freshly initialised, still usable
    assert "pre_norm" not in bb.config["vision"]


def test_timm_vit_with_pre_norm_and_without_qkv_bias(tmp_path):
    torch.manual_seed(0)
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=64, patch_size=8, embed_dim=128, depth=4, num_heads=4, num_classes=0, pre_norm=True,
        qkv_bias=False, norm_layer=partial(nn.LayerNorm, eps=1e-5)).eval()
    bb = create_backbone("umg:tiny", pretrained=_save(vit.state_dict(), tmp_path / "clip_style.bin"))
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(bb.dense(images).flatten(2).transpose(1, 2),
                                   vit.forward_features(images)[:, 1:], atol=2e-5, rtol=0)
    assert torch.count_nonzero(bb.visual.blocks[0].attn.qkv.bias) == 0


def test_size_mismatch_names_the_key_and_the_fix(tmp_path):
    file = _save(_openclip_tiny(width=64).state_dict(), tmp_path / "narrow.safetensors")
    with pytest.raises(ValueError, match=r"visual\..*has shape .*umg:tiny expects .*pick the umg arch"):
        create_backbone("umg:tiny", pretrained=file)


def test_unsupported_parts_and_unknown_files_raise(tmp_path):
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=64, patch_size=8, embed_dim=128, depth=4, num_heads=4, num_classes=0, init_values=1e-5)
    with pytest.raises(ValueError, match="ls1.gamma"):
        create_backbone("umg:tiny", pretrained=_save(vit.state_dict(), tmp_path / "layerscale.safetensors"))
    odd = _save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "odd.safetensors")
    with pytest.raises(ValueError, match="neither umg, open_clip .* nor timm"):
        create_backbone("umg:tiny", pretrained=odd)
    with pytest.raises(WeightsError, match="does not exist"):
        create_backbone("umg:tiny", pretrained=str(tmp_path / "missing.safetensors"))


def test_umg_state_dict_file_still_loads(tmp_path):
    src = create_backbone("umg:tiny")
    file = _save(src.state_dict(), tmp_path / "umg.safetensors")
    bb = create_backbone("umg:tiny", pretrained=file)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(bb.encode_image(images), src.encode_image(images), atol=0, rtol=0)
