"""Joint transforms keep image, boxes, masks and labels together; collate stacks and counts skips."""

import pytest
import torch
from torchvision.transforms import v2

from umgkit.data import CLIP_MEAN, JointTransform, build_transforms, collate_dicts


def detection_item(h: int = 100, w: int = 100) -> dict:
    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 20.0, 20.0], [40.0, 40.0, 80.0, 80.0]])
    masks = torch.zeros(3, h, w, dtype=torch.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
        masks[k, y1:y2, x1:x2] = 1
    return {"image": torch.rand(3, h, w), "boxes": boxes, "labels": torch.tensor([5, 6, 7]),
            "masks": masks, "iscrowd": torch.tensor([0, 1, 0]), "image_id": 3,
            "region_captions": ["a", "b", "c"]}


def test_horizontal_flip_moves_boxes_and_masks():
    item = detection_item()
    out = JointTransform([v2.RandomHorizontalFlip(p=1.0)])(item)
    assert out["boxes"][0].tolist() == [70.0, 20.0, 90.0, 40.0]
    assert out["boxes"][2].tolist() == [20.0, 40.0, 60.0, 80.0]
    assert torch.equal(out["image"], item["image"].flip(-1))
    assert torch.equal(out["masks"], item["masks"].flip(-1))
    assert type(out["boxes"]) is torch.Tensor and type(out["masks"]) is torch.Tensor
    assert out["image_id"] == 3 and out["labels"].tolist() == [5, 6, 7]


def test_crop_clips_boxes_and_drops_vanished_instances_with_their_labels():
    out = JointTransform([v2.CenterCrop(40)])(detection_item())  # window x, y in [30, 70)
    assert out["boxes"].tolist() == [[10.0, 10.0, 40.0, 40.0]]
    assert out["labels"].tolist() == [7] and out["iscrowd"].tolist() == [0]
    assert out["masks"].shape == (1, 40, 40) and int(out["masks"].sum()) == 30 * 30
    assert out["region_captions"] == ["c"]


def test_dense_resize_keeps_ignore_label_with_nearest():
    label = torch.zeros(48, 64, dtype=torch.int64)
    label[:, 32:] = 255
    label[:24, :16] = 3
    transform = build_transforms("dense", train=False, image_size=24)
    out = transform({"image": torch.rand(3, 48, 64), "label_map": label})
    assert out["image"].shape == (3, 24, 32) and out["label_map"].shape == (24, 32)
    assert set(out["label_map"].unique().tolist()) == {0, 3, 255}
    assert int((out["label_map"] == 255).sum()) == 24 * 16 and int((out["label_map"] == 3).sum()) == 12 * 8
    square = build_transforms("dense", train=False, image_size=24, eval_resize="square")
    assert square({"image": torch.rand(3, 48, 64), "label_map": label})["label_map"].shape == (24, 24)


def test_classification_eval_resizes_crops_and_normalises():
    image = torch.tensor(CLIP_MEAN).view(3, 1, 1).expand(3, 50, 80).clone()
    out = build_transforms("classification", train=False, image_size=32)({"image": image, "label": 2})
    assert out["image"].shape == (3, 32, 32) and out["label"] == 2
    assert float(out["image"].abs().max()) < 1e-3  # mean colour -> 0 after normalisation


@pytest.mark.parametrize("seed", range(8))
def test_detection_train_keeps_instances_consistent(seed):
    torch.manual_seed(seed)
    out = build_transforms("detection", train=True, image_size=64, normalize=False)(detection_item())
    k = out["boxes"].shape[0]
    assert out["image"].shape == (3, 64, 64) and out["masks"].shape == (k, 64, 64)
    assert out["labels"].shape == (k,) and out["iscrowd"].shape == (k,) and len(out["region_captions"]) == k
    assert bool((out["boxes"] >= 0).all()) and bool((out["boxes"] <= 64).all())
    assert bool(((out["boxes"][:, 2:] - out["boxes"][:, :2]) >= 1).all())
    assert bool(out["masks"].flatten(1).any(1).all())
    for box, mask in zip(out["boxes"], out["masks"], strict=True):  # box-filled masks stay inside boxes
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert xs.min() >= box[0] - 1 and xs.max() <= box[2] and ys.min() >= box[1] - 1 and ys.max() <= box[3]


def test_panoptic_masks_stay_bool_and_empty_segments_drop():
    masks = torch.zeros(2, 40, 40, dtype=torch.bool)
    masks[0, :, :20] = True
    masks[1, :, 38:] = True
    item = {"image": torch.rand(3, 40, 40), "masks": masks, "labels": torch.tensor([1, 2]),
            "isthing": torch.tensor([True, False]), "segment_ids": torch.tensor([11, 22])}
    out = JointTransform([v2.CenterCrop(20)])(item)
    assert out["masks"].dtype == torch.bool and out["masks"].shape == (1, 20, 20)
    assert out["segment_ids"].tolist() == [11] and out["isthing"].tolist() == [True]


def test_collate_stacks_lists_and_counts_skipped():
    a = {"image": torch.zeros(3, 4, 4), "label": 1, "boxes": torch.zeros(2, 4), "captions": ["x"],
         "path": "a"}
    b = {"image": torch.ones(3, 4, 4), "label": 0, "boxes": torch.zeros(2, 4), "captions": ["y", "z"],
         "path": "b"}
    batch = collate_dicts([a, None, b, None])
    assert batch["num_skipped"] == 2 and batch["batch_size"] == 2
    assert batch["image"].shape == (2, 3, 4, 4) and batch["label"].tolist() == [1, 0]
    assert isinstance(batch["boxes"], list) and len(batch["boxes"]) == 2  # per-image, even with equal shapes
    assert batch["captions"] == [["x"], ["y", "z"]] and batch["path"] == ["a", "b"]
    c = dict(a, image=torch.zeros(3, 5, 4))
    assert isinstance(collate_dicts([a, c])["image"], list)
    assert collate_dicts([None, None]) == {"num_skipped": 2, "batch_size": 0}


def test_real_panoptic_sample_through_dense_pipeline_and_loader():
    from pathlib import Path

    from torch.utils.data import DataLoader

    from umgkit.registry import DATASETS

    sample = Path(__file__).resolve().parent / "coco_panoptic_sample"  # in the repository
    ds = DATASETS.build("coco_panoptic", root=sample, split="val", annotations_file="panoptic_examples.json",
                        panoptic_dir="panoptic_examples", image_dir="input_images",
                        transform=build_transforms("dense", train=True, image_size=64))
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=collate_dicts)))
    assert batch["image"].shape == (2, 3, 64, 64) and batch["num_skipped"] == 0
    for masks, labels, ids in zip(batch["masks"], batch["labels"], batch["segment_ids"], strict=True):
        assert masks.shape[1:] == (64, 64) and masks.shape[0] == labels.shape[0] == ids.shape[0] > 0
        assert bool(masks.flatten(1).any(1).all())
