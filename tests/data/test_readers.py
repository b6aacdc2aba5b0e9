"""Readers on small generated fixtures in the standard layouts, plus the real COCO panoptic sample."""

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from umgkit.data import id_to_rgb
from umgkit.registry import DATASETS

PANOPTIC_SAMPLE = Path(__file__).resolve().parent / "coco_panoptic_sample"  # in the repository (README there)


def save_image(path: Path, w: int = 32, h: int = 24, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, dtype=np.uint8)).save(path)
    return path


def save_label(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path)
    return path


def test_all_readers_are_registered():
    import umgkit.data  # noqa: F401  (registers)
    for name in ("imagefolder", "csv", "coco_captions", "karpathy", "coco_instances", "coco_panoptic",
                 "ade20k", "seg_folder", "manifest"):
        assert name in DATASETS


def test_imagefolder_labels_follow_sorted_folders(tmp_path):
    for cls, n in (("dog", 2), ("cat", 3), ("emu", 1)):
        for i in range(n):
            save_image(tmp_path / "train" / cls / f"{i}.png", value=10 * i)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    ds = DATASETS.build("imagefolder", root=str(tmp_path), split="train", num_classes=3)
    assert ds.class_names == ["cat", "dog", "emu"]
    assert len(ds) == 6
    labels = [ds[i]["label"] for i in range(len(ds))]
    assert labels == [0, 0, 0, 1, 1, 2]
    item = ds[0]
    assert item["image"].shape == (3, 24, 32) and item["image"].dtype == torch.float32
    assert abs(float(item["image"].max()) - 0.0) < 1e-6 and item["path"].endswith("0.png")
    (tmp_path / "names.txt").write_text("house cat\ndomestic dog\nemu\n")
    named = DATASETS.build("imagefolder", root=tmp_path, split="train", class_names_file="names.txt", limit=4)
    assert named.class_names == ["house cat", "domestic dog", "emu"] and len(named) == 4


def test_csv_with_names_and_indices(tmp_path):
    for i in range(3):
        save_image(tmp_path / "img" / f"{i}.jpg")
    (tmp_path / "train.csv").write_text("path,label\nimg/0.jpg,zebra\nimg/1.jpg,ant\nimg/2.jpg,zebra\n")
    ds = DATASETS.build("csv", root=tmp_path, split="train")
    assert ds.class_names == ["ant", "zebra"]
    assert [ds[i]["label"] for i in range(3)] == [1, 0, 1]
    (tmp_path / "val.csv").write_text("img/0.jpg,4\nimg/1.jpg,0\n")
    val = DATASETS.build("csv", root=tmp_path, split="val")
    assert len(val.class_names) == 5 and [val[i]["label"] for i in range(2)] == [4, 0]


def test_coco_captions_groups_captions_per_image(tmp_path):
    save_image(tmp_path / "val2017" / "a.jpg")
    save_image(tmp_path / "val2017" / "b.jpg")
    ann = {"images": [{"id": 9, "file_name": "b.jpg"}, {"id": 4, "file_name": "a.jpg"}],
           "annotations": [{"image_id": 4, "id": 1, "caption": "a cat "},
                           {"image_id": 9, "id": 2, "caption": "x"},
                           {"image_id": 4, "id": 3, "caption": "a small cat"}]}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "captions_val2017.json").write_text(json.dumps(ann))
    ds = DATASETS.build("coco_captions", root=tmp_path, split="val")
    assert len(ds) == 2
    assert ds[0]["image_id"] == 4 and ds[0]["captions"] == ["a cat", "a small cat"]
    assert ds[1]["captions"] == ["x"]


def test_karpathy_splits_and_restval(tmp_path):
    images = []
    for i, split in enumerate(["train", "restval", "val", "test", "test"]):
        save_image(tmp_path / "val2014" / f"{i}.jpg")
        images.append({"split": split, "filepath": "val2014", "filename": f"{i}.jpg", "imgid": i,
                       "cocoid": 100 + i, "sentences": [{"raw": f"caption {i} {k}"} for k in range(5)]})
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))
    train = DATASETS.build("karpathy", root=tmp_path, split="train")
    test = DATASETS.build("karpathy", root=tmp_path, split="test")
    assert len(train) == 2 and len(test) == 2
    assert len(DATASETS.build("karpathy", root=tmp_path, split="train", include_restval=False)) == 1
    item = test[1]
    assert item["image_id"] == 104 and len(item["captions"]) == 5 and item["captions"][0] == "caption 4 0"


def _coco_instances_fixture(root: Path) -> dict:
    h, w = 40, 60
    save_image(root / "train2017" / "1.jpg", w=w, h=h)
    square = np.zeros((h, w), dtype=np.uint8)
    square[5:15, 10:30] = 1
    rle = mask_utils.encode(np.asfortranarray(square))
    rle["counts"] = rle["counts"].decode()
    polygon = [[30.0, 20.0, 50.0, 20.0, 50.0, 35.0, 30.0, 35.0]]
    uncompressed = {"size": [h, w], "counts": [h * 2, h * 3, h * w - h * 5]}  # columns 2..4 set
    ann = {"images": [{"id": 1, "file_name": "1.jpg", "height": h, "width": w},
                      {"id": 2, "file_name": "2.jpg", "height": h, "width": w}],
           "categories": [{"id": 11, "name": "kite"}, {"id": 3, "name": "car"}, {"id": 7, "name": "train"}],
           "annotations": [
               {"id": 1, "image_id": 1, "category_id": 11, "bbox": [10, 5, 20, 10], "iscrowd": 0,
                "segmentation": rle},
               {"id": 2, "image_id": 1, "category_id": 3, "bbox": [30, 20, 20, 15], "iscrowd": 0,
                "segmentation": polygon},
               {"id": 3, "image_id": 1, "category_id": 7, "bbox": [2, 0, 3, 40], "iscrowd": 1,
                "segmentation": uncompressed},
               {"id": 4, "image_id": 1, "category_id": 7, "bbox": [0, 0, 0, 5], "iscrowd": 0,
                "segmentation": []}]}
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(ann))
    return ann


def test_coco_instances_masks_boxes_and_label_mapping(tmp_path):
    ann = _coco_instances_fixture(tmp_path)
    ds = DATASETS.build("coco_instances", root=tmp_path, split="train", num_classes=3, drop_empty=True)
    assert ds.class_names == ["car", "train", "kite"]
    assert ds.cat_id_to_label == {3: 0, 7: 1, 11: 2} and ds.label_to_cat_id == [3, 7, 11]
    assert len(ds) == 1  # image 2 has no annotations
    item = ds[0]
    assert item["labels"].tolist() == [2, 0, 1]  # the zero-width box is dropped
    assert item["iscrowd"].tolist() == [0, 0, 1]
    assert item["boxes"].dtype == torch.float32
    assert item["boxes"][0].tolist() == [10.0, 5.0, 30.0, 15.0]
    assert item["boxes"][1].tolist() == [30.0, 20.0, 50.0, 35.0]
    assert item["masks"].shape == (3, 40, 60) and item["masks"].dtype == torch.uint8
    assert item["orig_size"].tolist() == [40, 60]
    segs = [a["segmentation"] for a in ann["annotations"][:3]]
    for k, segm in enumerate(segs):
        if isinstance(segm, list):
            ref = mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(segm, 40, 60)))
        elif isinstance(segm["counts"], list):
            ref = mask_utils.area(mask_utils.frPyObjects(segm, 40, 60))
        else:
            ref = mask_utils.area({"size": segm["size"], "counts": segm["counts"].encode()})
        assert int(item["masks"][k].sum()) == int(ref)
    assert int(item["masks"][0].sum()) == 200 and int(item["masks"][2].sum()) == 120
    assert len(DATASETS.build("coco_instances", root=tmp_path, split="train")) == 2


def _panoptic_kwargs():
    return dict(root=str(PANOPTIC_SAMPLE), split="val", annotations_file="panoptic_examples.json",
                panoptic_dir="panoptic_examples", image_dir="input_images",
                categories_file="panoptic_coco_categories.json")


def test_the_real_panoptic_sample_lives_in_the_repository():
    """Read from a folder outside the repository, the real-format tests skipped on a clean clone."""
    root = Path(__file__).resolve().parents[2]
    assert PANOPTIC_SAMPLE.is_relative_to(root)
    names = sorted(str(p.relative_to(PANOPTIC_SAMPLE)) for p in PANOPTIC_SAMPLE.rglob("*") if p.is_file())
    assert names == ["README.md", "images_info_examples.json", "input_images/000000142238.jpg",
                     "input_images/000000439180.jpg", "panoptic_coco_categories.json",
                     "panoptic_examples.json", "panoptic_examples/000000142238.png",
                     "panoptic_examples/000000439180.png"]


def test_coco_panoptic_real_sample_matches_json():
    ds = DATASETS.build("coco_panoptic", num_classes=133, **_panoptic_kwargs())
    data = json.loads((PANOPTIC_SAMPLE / "panoptic_examples.json").read_text())
    cats = json.loads((PANOPTIC_SAMPLE / "panoptic_coco_categories.json").read_text())
    assert len(ds) == 2 and len(ds.class_names) == 133 and sum(ds.thing_classes) == 80
    assert ds.label_to_cat_id[:3] == [1, 2, 3] and ds.label_to_cat_id[-1] == 200
    by_id = {a["image_id"]: a for a in data["annotations"]}
    for item in ds:
        ann = by_id[item["image_id"]]
        segs = {s["id"]: s for s in ann["segments_info"]}
        png = np.asarray(Image.open(PANOPTIC_SAMPLE / "panoptic_examples" / ann["file_name"]).convert("RGB"))
        assert item["file_name"] == ann["file_name"]
        assert item["masks"].dtype == torch.bool and item["masks"].shape[1:] == png.shape[:2]
        assert item["image"].shape[1:] == png.shape[:2]
        assert sorted(item["segment_ids"].tolist()) == sorted(segs)
        assert not bool((item["masks"].sum(0) > 1).any())  # segments never overlap
        for k, sid in enumerate(item["segment_ids"].tolist()):
            seg = segs[sid]
            assert int(item["masks"][k].sum()) == seg["area"]
            assert ds.label_to_cat_id[int(item["labels"][k])] == seg["category_id"]
            assert bool(item["iscrowd"][k]) == bool(seg["iscrowd"])
            isthing = next(c["isthing"] for c in cats if c["id"] == seg["category_id"])
            assert bool(item["isthing"][k]) == bool(isthing)
    assert [int(it["iscrowd"].sum()) for it in ds] == [1, 2]


def test_coco_panoptic_default_layout(tmp_path):
    ids = np.zeros((8, 10), dtype=np.int64)
    ids[:4] = 5 + 256 * 3  # a stuff segment with an id using two channels
    ids[5:, 2:6] = 70000
    (tmp_path / "annotations" / "panoptic_val2017").mkdir(parents=True)
    Image.fromarray(id_to_rgb(ids)).save(tmp_path / "annotations" / "panoptic_val2017" / "7.png")
    save_image(tmp_path / "val2017" / "7.jpg", w=10, h=8)
    segments = [{"id": 773, "category_id": 184, "iscrowd": 0, "area": 40},
                {"id": 70000, "category_id": 1, "iscrowd": 0, "area": 12}]
    data = {"images": [{"id": 7, "file_name": "7.jpg", "height": 8, "width": 10}],
            "annotations": [{"image_id": 7, "file_name": "7.png", "segments_info": segments}],
            "categories": [{"id": 184, "name": "tree", "isthing": 0},
                           {"id": 1, "name": "person", "isthing": 1}]}
    (tmp_path / "annotations" / "panoptic_val2017.json").write_text(json.dumps(data))
    item = DATASETS.build("coco_panoptic", root=tmp_path, split="val")[0]
    assert item["segment_ids"].tolist() == [773, 70000]
    assert item["labels"].tolist() == [1, 0] and item["isthing"].tolist() == [False, True]
    assert item["masks"].sum((1, 2)).tolist() == [40, 12]


def _ade_fixture(root: Path) -> None:
    label = np.array([[0, 1, 2, 150], [255, 3, 0, 1]], dtype=np.uint8).repeat(2, 0).repeat(2, 1)  # (4, 8)
    for folder in ("training", "validation"):
        save_image(root / "images" / folder / "ADE_1.jpg", w=8, h=4)
        save_label(root / "annotations" / folder / "ADE_1.png", label)
    (root / "classes.txt").write_text("\n".join(f"c{i}" for i in range(150)))


def test_ade20k_reduce_zero_label_and_split_alias(tmp_path):
    _ade_fixture(tmp_path)
    ds = DATASETS.build("ade20k", root=tmp_path, split="val", num_classes=150)
    assert ds.class_names[0] == "c0" and len(ds) == 1
    lm = ds[0]["label_map"]
    assert lm.dtype == torch.int64 and lm.shape == (4, 8)
    assert lm[::2, ::2].tolist() == [[255, 0, 1, 149], [255, 2, 255, 0]]
    (tmp_path / "classes.txt").write_text("\n".join(f"c{i}" for i in range(151)))
    raw = DATASETS.build("ade20k", root=tmp_path, split="train", reduce_zero_label=False)[0]["label_map"]
    assert raw[::2, ::2].tolist() == [[0, 1, 2, 150], [255, 3, 0, 1]]


def test_seg_folder_with_suffix_and_split_file(tmp_path):
    for stem in ("a", "b", "c"):
        save_image(tmp_path / "imgs" / f"{stem}.jpg", w=6, h=4)
        save_label(tmp_path / "labels" / f"{stem}_labelTrainIds.png", np.full((4, 6), 2))
    (tmp_path / "sets").mkdir()
    (tmp_path / "sets" / "val.txt").write_text("c\na\n")
    (tmp_path / "names.txt").write_text("sky\ngrass\nroad\n")
    ds = DATASETS.build("seg_folder", root=tmp_path, split="val", image_dir="imgs", label_dir="labels",
                        label_suffix="_labelTrainIds.png", split_file="sets/{split}.txt",
                        class_names_file="names.txt")
    assert ds.class_names == ["sky", "grass", "road"] and len(ds) == 2
    assert ds[0]["path"].endswith("c.jpg") and int(ds[0]["label_map"].unique()) == 2


def test_manifest_regions_and_masks(tmp_path):
    save_image(tmp_path / "m" / "imgs" / "0.jpg", w=20, h=10)
    mask = np.zeros((10, 20), dtype=np.uint8)
    mask[2:6, 3:9] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode()
    lines = [{"image": "imgs/0.jpg", "caption": "a red disc", "tags": ["disc", "red"],
              "regions": [{"box": [3, 2, 9, 6], "caption": "red disc", "tags": ["disc"], "mask": rle},
                          {"box": [10, 0, 25, 4], "caption": "sky", "tags": ["sky"]}]}]
    (tmp_path / "m" / "train.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    for root in (tmp_path / "m", tmp_path / "m" / "train.jsonl"):
        ds = DATASETS.build("manifest", root=root, split="train")
        assert len(ds) == 1 and ds.class_names == ["disc", "red", "sky"]
    item = ds[0]
    assert item["caption"] == "a red disc" and item["region_captions"] == ["red disc", "sky"]
    assert item["boxes"].tolist() == [[3, 2, 9, 6], [10, 0, 20, 4]]  # clipped to the 20 px width
    assert item["has_mask"].tolist() == [True, False]
    assert item["masks"].sum((1, 2)).tolist() == [24, 40]
