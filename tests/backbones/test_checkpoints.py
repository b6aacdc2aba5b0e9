"""Weights round-trip through the registry in each family's own format; hub names fail clearly offline."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from backbone_cases import build, images
from safetensors.torch import save_file

from umgkit.backbones import create_backbone, save_umg_checkpoint
from umgkit.errors import UnknownNameError, WeightsError


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Move every weight away from its init so a checkpoint that fails to load cannot pass by chance."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))


def _same_outputs(a, b, text: bool) -> None:
    x = images((64, 96))
    assert torch.equal(a.dense(x), b.dense(x))
    assert torch.equal(a.encode_image(x), b.encode_image(x))
    if text:
        assert torch.equal(a.encode_text(["a cat"]), b.encode_text(["a cat"]))
        assert torch.equal(a.embed_pixels(x), b.embed_pixels(x))


def test_umg_roundtrip(tmp_path):
    model = build("umg")
    _perturb(model, 3)
    out = save_umg_checkpoint(model, tmp_path / "ckpt")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((out / "config.json").read_text())["config"]["vision"]["width"] == 128
    for ref in (str(out), str(out / "model.safetensors")):
        loaded = create_backbone(f"umg:{ref}")
        _same_outputs(model, loaded, text=True)
        assert not any(p.requires_grad for p in loaded.parameters())
    # an architecture name plus a weights file loads the same weights
    _same_outputs(model, create_backbone("umg:tiny", pretrained=str(out / "model.safetensors")), text=True)


def test_umg_conv_stem_roundtrip_keeps_batchnorm_statistics(tmp_path):
    model = build("umg_conv").set_trainable(True).train()
    with torch.no_grad():
        model.dense(images((64, 64), batch=4))  # moves the stem's BatchNorm running statistics
    model.set_trainable(False).eval()
    stem_bn = model.visual.patch_embed[1]
    assert not torch.equal(stem_bn.running_mean, torch.zeros_like(stem_bn.running_mean))
    out = save_umg_checkpoint(model, tmp_path / "ckpt")
    loaded = create_backbone(f"umg:{out}")
    assert loaded.config["vision"]["stem"] == "conv"
    assert torch.equal(loaded.visual.patch_embed[1].running_mean, stem_bn.running_mean)
    _same_outputs(model, loaded, text=True)


def test_conv_stem_needs_a_power_of_two_patch():
    from umgkit.backbones.vit import VisionTransformer

    small = {"width": 32, "layers": 1, "heads": 2, "mlp_dim": 64, "embed_dim": 16}
    vit = VisionTransformer(image_size=64, patch_size=4, stem="conv", **small)
    assert vit.embed(torch.zeros(1, 3, 64, 48))[1] == (16, 12)
    with pytest.raises(ValueError, match="power-of-two patch_size, got 14"):
        VisionTransformer(image_size=224, patch_size=14, stem="conv", **small)
    with pytest.raises(ValueError, match="stem 'hybrid'"):
        VisionTransformer(image_size=64, patch_size=8, stem="hybrid", **small)


def test_umg_bad_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        create_backbone(f"umg:{tmp_path}")
    with pytest.raises(UnknownNameError, match="unknown umg architecture 'no-such-thing'"):
        create_backbone("umg:no-such-thing")


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_openclip_local_file(tmp_path, suffix):
    model = build("openclip")
    _perturb(model, 4)
    state = {k: v.contiguous() for k, v in model.model.state_dict().items()}
    path = tmp_path / f"weights{suffix}"
    if suffix == ".bin":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    loaded = create_backbone("openclip:umgkit-tiny-openclip", pretrained=str(path))
    _same_outputs(model, loaded, text=True)


def test_timm_local_file(tmp_path):
    model = build("timm")
    _perturb(model, 5)
    path = tmp_path / "timm.safetensors"
    save_file({k: v.contiguous() for k, v in model.model.state_dict().items()}, str(path))
    loaded = create_backbone("timm:vit_tiny_patch16_224", pretrained=str(path), depth=2)
    _same_outputs(model, loaded, text=False)


@pytest.mark.parametrize("name,tag", [("openclip:ViT-B-16", "laion2b_s34b_b88k"),
                                      ("timm:vit_tiny_patch16_224", "augreg_in21k")])
def test_hub_name_offline(monkeypatch, name, tag):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    family = name.split(":")[0]
    example = "open_clip_model" if family == "openclip" else "timm_model"
    with pytest.raises(WeightsError, match=rf"give a local file with model\.pretrained=/path/to/{example}"):
        create_backbone(name, pretrained=tag)


def test_hf_hub_name_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match=r"model\.pretrained=/path/to/open_clip_model\.safetensors"):
        create_backbone("openclip:hf-hub:laion/CLIP-ViT-B-16-laion2B-s34B-b88K")


@pytest.mark.parametrize("name", ["openclip:umgkit-tiny-openclip", "timm:vit_tiny_patch16_224"])
def test_missing_local_file(tmp_path, name):
    with pytest.raises(WeightsError, match="does not exist"):
        create_backbone(name, pretrained=str(tmp_path / "nope.safetensors"))


def test_unknown_names():
    with pytest.raises(UnknownNameError, match="unknown open_clip model"):
        create_backbone("openclip:ViT-Nope")
    with pytest.raises(UnknownNameError, match="unknown timm model"):
        create_backbone("timm:vit_nope")
    with pytest.raises(UnknownNameError, match="unknown backbone"):
        create_backbone("nope:thing")


def test_mean_pool_embeds_the_average_patch_token():
    model = build("umg_conv").eval()
    assert model.visual.pool == "mean"
    x = images((64, 64), batch=2)
    with torch.no_grad():
        patches = model.forward_tokens(x)[:, 1:]
        expected = F.normalize(model.project(patches.mean(dim=1)), dim=-1)
        assert torch.allclose(model.encode_image(x), expected, atol=1e-6)
        cls = F.normalize(model.project(model.forward_tokens(x)[:, 0]), dim=-1)
        assert not torch.allclose(model.encode_image(x), cls, atol=1e-3)
    with pytest.raises(ValueError, match="vision pool 'max'"):
        from umgkit.backbones.vit import VisionTransformer

        VisionTransformer(image_size=64, patch_size=8, width=32, layers=1, heads=2, mlp_dim=64, embed_dim=16,
                          pool="max")


def test_conv_stem_is_he_initialised():
    from umgkit.backbones.vit import ConvStem

    stem = build("umg_conv").visual.patch_embed
    assert isinstance(stem, ConvStem)
    conv = stem[4]  # 32 -> 64 channels: He (fan_out) std sqrt(2 / (64 * 9)) ~ 0.059, not ViT's 0.02
    assert abs(float(conv.weight.std()) - (2 / (64 * 9)) ** 0.5) < 0.006


def test_hf_hub_id_offline_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    with pytest.raises(WeightsError, match=r"hf:umgkit-test/absent: .*HF_HUB_OFFLINE is set"):
        create_backbone("hf:umgkit-test/absent")


def test_hf_folder_without_tokenizer_names_the_fix(tmp_path):
    from backbone_cases import hf_folder

    folder = tmp_path / "no_tokenizer"
    shutil.copytree(hf_folder("clip"), folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    bb = create_backbone(f"hf:{folder}")
    assert bb.encode_image(torch.zeros(1, 3, 32, 32)).shape == (1, 16)  # vision needs no tokenizer
    with pytest.raises(WeightsError, match=r"no tokenizer files are there\. Save one .*save_pretrained"):
        bb.encode_text(["a red circle"])


def _siglip_config(tokenizer: str) -> dict:
    """A tiny SigLIP-layout open_clip config (MAP-pooled timm ViT, last-token text pool) whose text side
    uses a Hugging Face tokenizer, as ViT-B-16-SigLIP does."""
    return {"embed_dim": 192, "init_logit_bias": -10, "custom_text": True,
            "vision_cfg": {"image_size": 224, "timm_model_name": "vit_tiny_patch16_224",
                           "timm_model_pretrained": False, "timm_pool": "map", "timm_proj": "none"},
            "text_cfg": {"context_length": 16, "vocab_size": 20, "hf_tokenizer_name": tokenizer,
                         "width": 64, "heads": 2, "layers": 2, "no_causal_mask": True, "proj_bias": True,
                         "pool_type": "last"}}


def test_siglip_tokenizer_from_a_local_file_and_offline_from_the_hub(tmp_path, monkeypatch):
    """SigLIP's open_clip tokenizer comes from the Hugging Face hub. A tokenizer folder written here
    (tokenizers' own format) stands in for it; a hub name that is not cached fails as one clear error,
    on the first text encoding (image features need no tokenizer)."""
    import open_clip

    from umgkit.backbones.hf_tiny import save_tiny_hf

    tokenizer_dir = save_tiny_hf(tmp_path / "tok", "siglip")  # its tokenizer.json / tokenizer_config.json
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "umgkit-test-siglip-local.json").write_text(json.dumps(_siglip_config(str(tokenizer_dir))))
    (configs / "umgkit-test-siglip-hub.json").write_text(json.dumps(_siglip_config("umgkit-test/absent")))
    open_clip.add_model_config(configs)

    bb = create_backbone("openclip:umgkit-test-siglip-local")
    texts = ["a red circle", "the blue square"]
    expected = bb.model.encode_text(bb.tokenize(texts), normalize=True)
    torch.testing.assert_close(bb.encode_text(texts), expected, atol=1e-5, rtol=0)
    assert bb.tokenize(texts).shape == (2, 16)

    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read once at import; the libraries consult it
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    offline = create_backbone("openclip:umgkit-test-siglip-hub")
    assert offline.encode_image(torch.zeros(1, 3, 32, 32)).shape == (1, 192)
    with pytest.raises(WeightsError, match=r"text tokenizer could not be loaded .*HF_HUB_OFFLINE=1 works"):
        offline.encode_text(texts)
