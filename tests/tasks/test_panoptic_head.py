"""Mask2Former head shapes and classifiers; panoptic / semantic / instance inference on hand-built queries."""

import pytest
import torch

from umgkit.backbones import create_backbone
from umgkit.heads import Mask2FormerOptions, build_mask2former
from umgkit.models._panoptic_inference import instance_inference, panoptic_inference, semantic_inference

SMALL = {"hidden_dim": 64, "num_queries": 6, "decoder_layers": 3, "encoder_layers": 1, "num_heads": 4,
         "dim_feedforward": 64, "encoder_feedforward_dim": 64}


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("umg:tiny")


def test_learned_head_shapes_and_gradients(backbone):
    torch.manual_seed(0)
    head = build_mask2former(backbone, num_classes=5, options=Mask2FormerOptions(**SMALL))
    out = head(backbone.dense(torch.rand(2, 3, 64, 48)))
    assert tuple(out["pred_logits"].shape) == (2, 6, 6)  # 5 classes + "no object"
    assert tuple(out["pred_masks"].shape) == (2, 6, 16, 12)  # stride 4, non-square input
    assert len(out["aux"]) == 2 and tuple(out["aux"][0]["pred_masks"].shape) == (2, 6, 16, 12)
    assert torch.isfinite(out["pred_logits"]).all() and torch.isfinite(out["pred_masks"]).all()
    (out["pred_logits"].sum() + out["pred_masks"].sum()).backward()
    grads = [p.grad for p in head.decoder.parameters() if p.requires_grad]
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) > 0.9 * len(grads)


def test_open_vocab_head_follows_the_class_names(backbone):
    head = build_mask2former(backbone, class_names=["cat", "dog"],
                             options=Mask2FormerOptions(classifier="open_vocab", **SMALL))
    feats = backbone.dense(torch.rand(1, 3, 32, 32))
    assert head(feats)["pred_logits"].shape[-1] == 3
    head.set_class_names(["red circle", "blue square", "sky", "grass"])
    assert head.num_classes == 4 and head(feats)["pred_logits"].shape[-1] == 5
    # the same text encoding as the open-vocabulary semantic head (mean over templates, re-normalised)
    expected = torch.nn.functional.normalize(backbone.encode_text(["a photo of a sky."]).float(), dim=-1)
    torch.testing.assert_close(head.text_embeddings[2:3], expected, rtol=1e-4, atol=1e-5)
    assert "text_embeddings" not in head.state_dict()  # checkpoints never depend on the class set


def test_head_option_errors_name_the_fix(backbone):
    with pytest.raises(ValueError, match="multiple of 32"):
        build_mask2former(backbone, num_classes=3, options=Mask2FormerOptions(**{**SMALL, "hidden_dim": 48}))
    with pytest.raises(ValueError, match="classifier='nope'"):
        build_mask2former(backbone, num_classes=3, options=Mask2FormerOptions(classifier="nope", **SMALL))


def _queries():
    """4 queries over a 4 x 4 image, classes 0 = thing, 1 = stuff (2 = "no object")."""
    big = 10.0
    logits = torch.tensor([[big, 0, 0],   # a thing, left two columns
                           [0, big, 0],   # stuff, column 2
                           [0, big, 0],   # the same stuff class, column 3 -> merged with query 1
                           [0, 0, big]])  # "no object"
    masks = torch.full((4, 4, 4), -big)
    masks[0, :, :2] = big
    masks[1, :, 2] = big
    masks[2, :, 3] = big
    masks[3] = big  # would cover everything, but it is "no object"
    return logits, masks


def test_panoptic_inference_merges_stuff_and_drops_no_object():
    logits, masks = _queries()
    ids, segments = panoptic_inference(logits, masks, (4, 4), isthing=[True, False])
    assert [(s["category_id"], s["isthing"]) for s in segments] == [(0, True), (1, False)]
    thing, stuff = segments[0]["id"], segments[1]["id"]
    assert thing != stuff and 0 not in (thing, stuff)
    assert (ids[:, :2] == thing).all() and (ids[:, 2:] == stuff).all()
    ids8, _ = panoptic_inference(logits, masks, (8, 8), isthing=[True, False])  # up-sampled to the size asked
    assert tuple(ids8.shape) == (8, 8) and (ids8[:, :4] == thing).all()


def test_panoptic_inference_thresholds_leave_void():
    logits, masks = _queries()
    assert len(panoptic_inference(logits, masks, (4, 4), isthing=[True, False], min_area=8)[1]) == 2
    ids, segments = panoptic_inference(logits, masks, (4, 4), isthing=[True, False], min_area=9)
    assert segments == [] and (ids == 0).all()  # both segments have 8 px
    logits[0] = torch.tensor([1.0, 0.0, 0.9])  # thing score ~0.4 < object_threshold 0.8
    ids, segments = panoptic_inference(logits, masks, (4, 4), isthing=[True, False])
    assert [s["category_id"] for s in segments] == [1] and (ids[:, :2] == 0).all()


def test_semantic_and_instance_outputs_from_the_same_queries():
    logits, masks = _queries()
    sem = semantic_inference(logits, masks, (4, 4))
    assert tuple(sem.shape) == (2, 4, 4)
    assert (sem.argmax(0)[:, :2] == 0).all() and (sem.argmax(0)[:, 2:] == 1).all()
    inst = instance_inference(logits, masks, (4, 4), isthing=[True, False])
    assert inst["labels"].tolist()[0] == 0 and (inst["labels"] == 0).all()  # things only
    assert inst["masks"][0][:, :2].all() and not inst["masks"][0][:, 2:].any()
    assert inst["scores"][0] > 0.99 and (inst["scores"][1:] <= inst["scores"][0]).all()


def test_criterion_matches_targets_and_handles_images_without_segments():
    from umgkit.heads.mask2former import SetCriterion

    torch.manual_seed(0)
    crit = SetCriterion(num_classes=2, num_points=256, importance_sample_ratio=0.0)  # uniform points
    target = torch.zeros(1, 32, 32)
    target[0, :, :16] = 1
    good_cls = torch.tensor([[[10.0, 0, 0], [0, 0, 10.0]]])  # query 0 = class 0, query 1 = "no object"
    good_mask = (target[None] * 20 - 10).repeat(1, 2, 1, 1)
    good = crit([good_cls], [good_mask], [target], [torch.tensor([0])])
    bad = crit([good_cls.flip(1)], [-good_mask], [target], [torch.tensor([0])])
    assert good["loss"] < 1.0 and bad["loss"] > 20.0  # only bilinear sampling across the mask edge costs
    no_segments = ([torch.zeros(0, 32, 32)], [torch.zeros(0, dtype=torch.long)])
    empty = crit([good_cls.requires_grad_()], [good_mask], *no_segments)
    assert torch.isfinite(empty["loss"]) and empty["mask"] == 0
    empty["loss"].backward()
    assert good_cls.grad[0, 0].abs().sum() > 0  # the class-0 query learns to say "no object"
