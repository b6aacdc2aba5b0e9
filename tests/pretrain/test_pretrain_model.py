"""The pretraining forward: reduction keeps full-grid dense outputs; without it, it is the backbone."""

import pytest
import torch
import torch.nn.functional as F

from umgkit.backbones import create_backbone
from umgkit.pretrain import PretrainModel


@pytest.fixture
def model():
    torch.manual_seed(0)
    return PretrainModel(create_backbone("umg:tiny"), reduction="cluster", keep_ratio=0.25)


@pytest.mark.parametrize("reduction", ["cluster", "random"])
def test_reduction_gives_full_grid_dense_features(model, reduction):
    model.reduction = reduction
    model.train()
    images = torch.randn(2, 3, 64, 64)  # 8 x 8 grid, 64 patches -> 16 kept
    boxes = [torch.tensor([[0.0, 0.0, 32.0, 32.0]]), torch.tensor([[8.0, 8.0, 64.0, 40.0], [0, 0, 64, 64]])]
    out = model(images, ["a red circle", "a blue star"], boxes=boxes, want_tokens=True)
    assert out["patch"].shape == (2, 16, 128)  # what the last block saw
    assert out["pixel"].shape == (2, 128, 8, 8)  # scattered back onto the full grid
    assert torch.allclose(out["pixel"].norm(dim=1), torch.ones(2, 8, 8), atol=1e-5)
    assert out["region"].shape == (3, 128) and out["image"].shape == (2, 128)
    # every grid cell holds one of the reduced tokens (cluster: its cluster's token; random: nearest kept)
    pix = out["pixel"].flatten(2).transpose(1, 2)  # (B, 64, D)
    best = (pix @ out["patch"].transpose(1, 2)).max(dim=2).values.detach()  # cosine to the closest token
    assert float(best.min()) > 1 - 1e-5
    # mean pooling averages the full grid, so a merged token weighs as many cells as it covers
    bb = model.backbone
    bb.visual.pool = "mean"
    torch.manual_seed(1)
    image = model(images, ["a red circle", "a blue star"])["image"]
    torch.manual_seed(1)
    _, tokens, fmap, _ = model.image_features(images)
    assert torch.allclose(image, F.normalize(bb.project(fmap.mean(dim=(2, 3))), dim=-1), atol=1e-5)
    assert not torch.allclose(image, F.normalize(bb.project(tokens.mean(dim=1)), dim=-1), atol=1e-3)
    bb.visual.pool = "cls"
    (out["image"].sum() + out["region"].sum() + out["pixel"].sum()).backward()
    assert model.backbone.visual.blocks[0].attn.qkv.weight.grad is not None


@pytest.mark.parametrize("arch", ["tiny", "tiny_conv"])  # class-token and mean pooling
def test_eval_mode_equals_backbone_methods(arch):
    torch.manual_seed(0)
    model = PretrainModel(create_backbone(f"umg:{arch}"), reduction="cluster", keep_ratio=0.25).eval()
    bb = model.backbone
    images = torch.randn(2, 3, 64, 64)
    boxes = [torch.tensor([[4.0, 4.0, 40.0, 30.0]]), torch.tensor([[0.0, 0.0, 64.0, 64.0]])]
    with torch.no_grad():
        out = model(images, ["a red circle on grass", "two stars"], boxes=boxes)
        assert torch.allclose(out["image"], bb.encode_image(images), atol=1e-5)
        assert torch.allclose(out["region"], bb.embed_regions(images, boxes), atol=1e-5)
        assert torch.allclose(out["pixel"], bb.embed_pixels(images), atol=1e-5)
        assert torch.allclose(out["text"], bb.encode_text(["a red circle on grass", "two stars"]), atol=1e-5)


def test_text_tokens_and_trimmed_context(model):
    bb = model.backbone
    texts = ["a red circle", "two blue stars left of a ring"]
    ids = model.text_ids(texts, torch.device("cpu"))
    full = bb.tokenize(texts)
    assert ids.shape[1] == int(full.argmax(dim=1).max()) + 1 < full.shape[1]
    with torch.no_grad():
        tokens, pooled = bb.text.forward_tokens(ids)
        assert torch.allclose(pooled, bb.text(full), atol=1e-5)  # causal mask: trimming changes nothing
        assert tokens.shape == (2, ids.shape[1], 128)
    out = model(torch.randn(2, 3, 64, 64), texts, want_tokens=True)
    assert out["text_mask"].sum(dim=1).tolist() == [3, 7]  # words only: no start/end/padding tokens


def test_length_buckets_compute_what_one_padded_batch_does(model):
    texts = ["a red circle", "grass", "two blue stars left of a ring on water above sand", "a star",
             "the largest shape is a yellow hexagon, with three other shapes"]
    ids = model.text_ids(texts, torch.device("cpu"))
    with torch.no_grad():
        ref_tokens, ref_pooled = model.backbone.text.forward_tokens(ids)
        pooled, tokens = model.encode_texts(ids, want_tokens=True)
        pooled_only, none = model.encode_texts(ids)
    assert none is None and tokens.shape == ref_tokens.shape
    torch.testing.assert_close(pooled, ref_pooled, atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled_only, ref_pooled, atol=1e-5, rtol=0)
    lengths = ids.argmax(dim=1) + 1
    for i, n in enumerate(lengths.tolist()):  # every real token equal; a short one's padding is zero
        torch.testing.assert_close(tokens[i, :n], ref_tokens[i, :n], atol=1e-5, rtol=0)
    assert lengths.min() < ids.shape[1] // 2 and float(tokens[0, int(lengths[0]):].abs().sum()) == 0.0
    same = model.text_ids(["a red circle", "a blue star"], torch.device("cpu"))  # one bucket
    with torch.no_grad():
        pooled, tokens = model.encode_texts(same, want_tokens=True)
        ref_tokens, ref_pooled = model.backbone.text.forward_tokens(same)
    torch.testing.assert_close(pooled, ref_pooled, atol=0, rtol=0)
    torch.testing.assert_close(tokens, ref_tokens, atol=0, rtol=0)
