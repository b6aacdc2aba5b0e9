"""Semantic heads: shapes from declared backbone shapes, open-vocabulary class swapping, the loss."""

import pytest
import torch

from umgkit.backbones import create_backbone
from umgkit.heads.segmentation import SemanticOptions, build_semantic_fpn, build_semantic_uper
from umgkit.models import SemanticModel
from umgkit.tasks.semantic import dice_loss


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return create_backbone("umg:tiny")


@pytest.mark.parametrize(("build", "size"), [(build_semantic_fpn, (56, 72)), (build_semantic_uper, (64, 64))])
@torch.no_grad()
def test_learned_head_shapes(backbone, build, size):
    head = build(backbone, num_classes=7, options=SemanticOptions(pyramid_channels=32, channels=32)).eval()
    image = torch.randn(2, 3, *size)
    logits = head(backbone.dense(image))
    assert logits.shape == (2, 7, size[0] // 4, size[1] // 4)
    assert SemanticModel(backbone, head)(image).shape == (2, 7, *size)
    with pytest.raises(ValueError, match="open_vocab"):
        head.set_class_names(["a"])


@torch.no_grad()
def test_open_vocab_swaps_classes_by_name(backbone):
    names = ["sky", "grass", "water"]
    options = SemanticOptions(classifier="open_vocab", pyramid_channels=32, channels=32)
    head = build_semantic_fpn(backbone, class_names=names, options=options).eval()
    assert head.classifier.out_channels == backbone.embed_dim  # projects to the joint space D
    feats = backbone.dense(torch.randn(2, 3, 64, 64))
    base = head(feats)
    assert base.shape[1] == 3

    more = ["brick", "water", "sky", "sand", "grass"]
    head.set_class_names(more)
    assert head.num_classes == 5 and head.class_names == more
    swapped = head(feats)
    assert swapped.shape[1] == 5
    # a class's logit depends only on its name: channels follow the names wherever they move
    for i, name in enumerate(names):
        torch.testing.assert_close(swapped[:, more.index(name)], base[:, i])
    # argmax over the original three names, read through the new order, is the same prediction
    sub = swapped[:, [more.index(n) for n in names]]
    assert torch.equal(sub.argmax(1), base.argmax(1))
    assert "text_embeddings" not in head.state_dict()  # the class set is not part of a checkpoint


def test_open_vocab_errors(backbone):
    with pytest.raises(ValueError, match="class_names"):
        build_semantic_fpn(backbone, options=SemanticOptions(classifier="open_vocab"))
    with pytest.raises(ValueError, match="classifier"):
        build_semantic_fpn(backbone, num_classes=3, options=SemanticOptions(classifier="nearest"))
    with pytest.raises(ValueError, match="num_classes"):
        build_semantic_fpn(backbone)


def test_dice_loss_perfect_and_ignored():
    target = torch.tensor([[[0, 1], [1, 255]]])
    logits = torch.nn.functional.one_hot(target.clamp_max(1), 2).permute(0, 3, 1, 2).float() * 50
    assert float(dice_loss(logits, target)) == pytest.approx(0.0, abs=1e-4)
    assert float(dice_loss(-logits, target)) > 0.5
