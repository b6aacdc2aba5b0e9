"""Bad samples raise one clear error, or with skip_bad are dropped and counted through DataLoader workers."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from torch.utils.data import DataLoader

from umgkit.data import BadSampleError, DatasetError, collate_dicts
from umgkit.registry import DATASETS


def save_image(path: Path, size: int = 16, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def corrupt_images(root: Path):
    for i in range(4):
        save_image(root / "train" / ("a" if i % 2 else "b") / f"{i}.png", seed=i)
    for name in ("a/bad1.jpg", "b/bad2.jpg"):
        (root / "train" / name).write_bytes(b"this is not a JPEG at all")
    return "imagefolder", {}, "bad1.jpg"


def truncated_images(root: Path):
    for i in range(6):
        save_image(root / "train" / ("a" if i % 2 else "b") / f"{i}.jpg", size=64, seed=i)
    for i in (1, 4):
        path = root / "train" / ("a" if i % 2 else "b") / f"{i}.jpg"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "imagefolder", {}, "1.jpg"


def missing_files(root: Path):
    for i in range(4):
        save_image(root / "img" / f"{i}.png", seed=i)
    rows = [f"img/{i}.png,{i % 2}" for i in range(4)] + ["img/gone1.png,0", "img/gone2.png,1"]
    (root / "train.csv").write_text("\n".join(rows))
    return "csv", {}, "gone1.png"


def labels_out_of_range(root: Path):
    for i in range(6):
        save_image(root / "img" / f"{i}.png", seed=i)
    labels = [0, 1, 7, 2, "walrus", 1]
    (root / "names.txt").write_text("cat\ndog\nemu\n")
    (root / "train.csv").write_text("\n".join(f"img/{i}.png,{lab}" for i, lab in enumerate(labels)))
    return "csv", {"class_names_file": "names.txt", "num_classes": 3}, "'7'"


def seg_labels_out_of_range(root: Path):
    for i in range(6):
        save_image(root / "images" / "train" / f"{i}.png", seed=i)
        label = np.full((16, 16), 9 if i in (0, 3) else (255 if i == 5 else 2), dtype=np.uint8)
        (root / "annotations" / "train").mkdir(parents=True, exist_ok=True)
        Image.fromarray(label, mode="L").save(root / "annotations" / "train" / f"{i}.png")
    (root / "classes.txt").write_text("a\nb\nc\n")
    return "seg_folder", {}, "0.png"


def unknown_categories(root: Path):
    images, anns = [], []
    for i in range(6):
        save_image(root / "train2017" / f"{i}.jpg", seed=i)
        images.append({"id": i, "file_name": f"{i}.jpg", "height": 16, "width": 16})
        anns.append({"id": i, "image_id": i, "category_id": 99 if i in (2, 5) else 1, "bbox": [1, 1, 5, 5],
                     "iscrowd": 0, "segmentation": [[1, 1, 6, 1, 6, 6, 1, 6]]})
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}))
    return "coco_instances", {}, "category_id 99"


def bad_manifest_lines(root: Path):
    lines = []
    for i in range(4):
        save_image(root / "imgs" / f"{i}.png", seed=i)
        lines.append(json.dumps({"image": f"imgs/{i}.png", "caption": f"image {i}", "regions": []}))
    lines[1:1] = ['{"image": "imgs/0.png", "caption": oops}', '{"caption": "no image key"}']
    (root / "train.jsonl").write_text("\n".join(lines))
    return "manifest", {}, "train.jsonl:2"


CASES = [corrupt_images, truncated_images, missing_files, labels_out_of_range, seg_labels_out_of_range,
         unknown_categories, bad_manifest_lines]


@pytest.mark.parametrize("make", CASES, ids=lambda f: f.__name__)
def test_bad_sample_raises_one_clear_error(tmp_path, make):
    name, options, needle = make(tmp_path)
    ds = DATASETS.build(name, root=tmp_path, split="train", **options)
    assert len(ds) == 6
    with pytest.raises(BadSampleError, match="skip_bad|fix|Fix") as info:
        for i in range(len(ds)):
            ds[i]
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("make", CASES, ids=lambda f: f.__name__)
def test_bad_sample_skipped_and_counted_across_workers(tmp_path, make):
    name, options, _ = make(tmp_path)
    ds = DATASETS.build(name, root=tmp_path, split="train", skip_bad=True, **options)
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_dicts)
    batches = list(loader)
    assert sum(b["num_skipped"] for b in batches) == 2
    assert sum(b["batch_size"] for b in batches) == 4
    assert sum(len(b["image"]) for b in batches if b["batch_size"]) == 4


def test_truncated_detection_leaves_pil_setting_alone(tmp_path):
    truncated_images(tmp_path)
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ds = DATASETS.build("imagefolder", root=tmp_path, split="train", skip_bad=True)
    assert sum(ds[i] is None for i in range(len(ds))) == 2 and ds.num_skipped == 2
    assert ImageFile.LOAD_TRUNCATED_IMAGES is before is False


@pytest.mark.parametrize("skip_bad", [False, True])
@pytest.mark.parametrize("make,name,options,count", [
    (corrupt_images, "imagefolder", {}, 2),
    (labels_out_of_range, "csv", {"class_names_file": "names.txt"}, 3),
    (seg_labels_out_of_range, "seg_folder", {}, 3),
    (unknown_categories, "coco_instances", {}, 1),
], ids=["imagefolder", "csv", "seg_folder", "coco_instances"])
def test_class_count_mismatch_raises_at_construction(tmp_path, make, name, options, count, skip_bad):
    make(tmp_path)
    with pytest.raises(DatasetError, match=f"num_classes=5 but .* has {count} classes.*num_classes={count}"):
        DATASETS.build(name, root=tmp_path, split="train", num_classes=5, skip_bad=skip_bad, **options)


def test_layout_errors_name_the_path(tmp_path):
    with pytest.raises(DatasetError, match="split folder not found"):
        DATASETS.build("imagefolder", root=tmp_path, split="train")
    with pytest.raises(DatasetError, match="instances_val2017.json"):
        DATASETS.build("coco_instances", root=tmp_path, split="val")
    (tmp_path / "images" / "training").mkdir(parents=True)
    with pytest.raises(DatasetError, match="classes.txt"):
        DATASETS.build("ade20k", root=tmp_path, split="train")
