"""RCNNHead on umg:tiny: images of different sizes share one padded batch, detections map back to each
image's stored size, and bad options fail with a message naming them."""

import pytest
import torch

from umgkit.backbones import create_backbone
from umgkit.heads.detection import RCNNOptions, build_vitdet_rcnn
from umgkit.models import DetectionModel

_SMALL = {"pyramid_channels": 32, "anchor_sizes": [8, 16, 32, 64], "representation_size": 64,
          "mask_channels": 16, "mask_layers": 1, "roi_batch_size": 32}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    backbone = create_backbone("umg:tiny")
    head = build_vitdet_rcnn(backbone, num_classes=3, masks=True, options=RCNNOptions(**_SMALL))
    return DetectionModel(backbone, head)


def test_varying_sizes_pad_together_and_map_back_to_the_stored_size(model):
    images = [torch.randn(3, 48, 64), torch.randn(3, 64, 40)]  # resized views of 96x128 and 128x80 images
    batch = model.head.batch(images)
    assert tuple(batch.tensors.shape) == (2, 3, 64, 64) and batch.image_sizes == [(48, 64), (64, 40)]
    assert batch.tensors[1, :, :, 40:].abs().sum() == 0  # padding right / bottom only
    model.eval()
    model.head.roi_heads.score_thresh = 0.0  # untrained: keep every box so there is something to check
    with torch.no_grad():
        dets = model(images, original_sizes=[(96, 128), (128, 80)])
    stored, resized = [(96, 128), (128, 80)], [(48, 64), (64, 40)]
    for det, (h, w), (small_h, small_w) in zip(dets, stored, resized, strict=True):
        boxes = det["boxes"]
        assert len(boxes) > 0 and det["masks"].shape[1:] == (1, h, w)
        assert boxes[:, 0::2].max() <= w and boxes[:, 1::2].max() <= h
        assert boxes[:, 2].max() > small_w or boxes[:, 3].max() > small_h  # scaled up, not left as is
        assert det["labels"].min() >= 0 and det["labels"].max() < 3  # background shift undone


def test_training_on_a_list_of_sizes_gives_every_loss(model):
    model.train()
    images = [torch.randn(3, 48, 64), torch.randn(3, 64, 40)]
    masks = [torch.zeros(1, 48, 64, dtype=torch.uint8), torch.zeros(2, 64, 40, dtype=torch.uint8)]
    masks[0][0, 10:30, 10:40] = 1
    masks[1][0, 5:20, 5:20] = 1
    masks[1][1, 30:60, 10:35] = 1
    targets = [{"boxes": torch.tensor([[10.0, 10, 40, 30]]), "labels": torch.tensor([2]), "masks": masks[0]},
               {"boxes": torch.tensor([[5.0, 5, 20, 20], [10, 30, 35, 60]]), "labels": torch.tensor([0, 1]),
                "masks": masks[1]}]
    losses = model(images, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg",
                           "loss_mask"}
    assert all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match="needs targets"):
        model(images)


@pytest.mark.parametrize("options, match", [
    ({"classifier": "softmax"}, "classifier='softmax'"),
    ({"anchor_sizes": [8, 16]}, "anchor_sizes"),
])
def test_bad_head_options_name_themselves(options, match):
    backbone = create_backbone("umg:tiny")
    with pytest.raises(ValueError, match=match):
        build_vitdet_rcnn(backbone, num_classes=3, options=RCNNOptions(**{**_SMALL, **options}))


def test_open_vocab_on_a_vision_only_backbone_says_what_to_pick():
    from umgkit.heads.detection import RCNNHead

    with pytest.raises(ValueError, match="umg:tiny or openclip"):
        RCNNHead(width=32, patch_size=8, class_names=["a"], classifier="open_vocab", embed_dim=None)
