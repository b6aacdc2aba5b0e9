"""Pretraining from an open_clip dual encoder: the tiny EVA02-CLIP layout (timm EVA02 trunk with rotary
position embeddings, open_clip's causal text tower) trains 20 steps with token reduction, and the saved
state dict loads back through the registry as the trained backbone."""

import pytest
import torch
from conftest import tiny_config

from umgkit.backbones import create_backbone
from umgkit.config import load_config
from umgkit.pretrain import run_pretrain
from umgkit.pretrain.model import PretrainModel
from umgkit.pretrain.text_tower import text_tower

EVA02 = "openclip:umgkit-tiny-eva02"


def test_open_clip_text_tokens_pool_to_encode_text():
    torch.manual_seed(0)
    bb = create_backbone(EVA02)
    ids = bb.tokenize(["a red circle", "two blue squares and a star"])  # (2, context length)
    tokens, pooled = text_tower(bb).tokens(ids)
    torch.testing.assert_close(pooled, bb.model.encode_text(ids, normalize=False), atol=1e-5, rtol=1e-5)
    short, short_pooled = text_tower(bb).tokens(ids[:, :12])  # causal: a cut after the end-of-text is exact
    assert short.shape == (2, 12, 64)
    torch.testing.assert_close(short, tokens[:, :12], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(short_pooled, pooled, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("reduction", ["cluster", "random"])
def test_eva02_reduction_keeps_one_rotary_position_per_token(reduction):
    """With reduction off (and in eval mode) the pretraining forward is the backbone's own; with it on,
    every reduced token carries a rotary row, so the tower runs on the short sequence."""
    torch.manual_seed(0)
    model = PretrainModel(create_backbone(EVA02), reduction=reduction, keep_ratio=0.25, reduce_after=1)
    images = torch.randn(2, 3, 56, 56)
    model.eval()
    out = model(images, ["a red circle"] * 2)
    torch.testing.assert_close(out["image"], model.backbone.encode_image(images), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["pixel"], model.backbone.embed_pixels(images), atol=1e-5, rtol=1e-5)
    model.train()
    prefix, tokens, fmap, grid = model.image_features(images)
    assert grid == (4, 4) and tokens.shape == (2, 4, 192) and fmap.shape == (2, 192, 4, 4)


@pytest.mark.slow
def test_pretraining_an_eva02_clip_runs_and_loads_back(tiny_world, tmp_path):
    path = tmp_path / "eva02.yaml"
    path.write_text(tiny_config(tiny_world, tmp_path / "run", max_steps=20))
    cfg = load_config(path, [f"model.backbone={EVA02}", "data.image_size=56",
                             "task_options.reduction=cluster", "task_options.keep_ratio=0.5"])
    result = run_pretrain(cfg, echo=False)
    assert result["train"]["train/loss"] == result["train"]["train/loss"]  # a number
    assert set(result["zeroshot"]) == {"classification", "regions", "segmentation"}
    assert result["load"] == f"model.backbone={EVA02} model.pretrained={result['backbone']}"
    loaded = create_backbone(EVA02, pretrained=result["backbone"])
    fresh = create_backbone(EVA02)
    images = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        trained = loaded.encode_image(images)
        assert not torch.allclose(trained, fresh.encode_image(images), atol=1e-3)  # the trained weights
        state = {k: v for k, v in loaded.model.state_dict().items()}
    from safetensors.torch import load_file

    saved = load_file(result["backbone"])
    assert set(saved) == set(state) and all(torch.equal(saved[k], state[k]) for k in saved)
