"""The synthetic world: every format is written, readable by the reference tools, and consistent.

One small world (30 images, 64 px) is generated per module and checked across formats; two more
check determinism (same seed through the process pool) and seed sensitivity.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from umgkit.data.synth import (
    ADE_CLASSES,
    COLOURS,
    STUFF_CLASSES,
    THING_CLASSES,
    generate_world,
    min_visible_area,
)
from umgkit.data.synth import world as world_module
from umgkit.errors import ConfigError

# pycocotools' decode trips a numpy 2 deprecation inside pycocotools itself; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

NUM, SIZE, SEED = 30, 64, 0
SPLITS = {"train": "training", "val": "validation"}
NUMBER = {1: "a", 2: "two", 3: "three", 4: "four"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("world")
    return out, generate_world(out, num=NUM, size=SIZE, seed=SEED, progress=False)


def _coco(path: Path) -> COCO:
    return COCO(str(path))


def _panoptic_ids(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def _instances(out: Path, split: str) -> tuple[COCO, dict[int, list[dict]]]:
    coco = _coco(out / "coco" / "annotations" / f"instances_{split}.json")
    by_image = {i: sorted(coco.imgToAnns[i], key=lambda a: a["id"]) for i in coco.getImgIds()}
    return coco, by_image


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_format_exists(world):
    out, summary = world
    meta = json.loads((out / "world.json").read_text())
    assert summary["counts"] == meta["counts"] == {"train": 24, "val": 6}
    assert meta["thing_classes"] == list(THING_CLASSES) and len(THING_CLASSES) >= 6
    assert len(COLOURS) >= 6 and len(STUFF_CLASSES) >= 3
    for split, ade_split in SPLITS.items():
        n = summary["counts"][split]
        ann = out / "coco" / "annotations"
        for kind in ("captions", "instances", "panoptic"):
            assert (ann / f"{kind}_{split}.json").is_file()
        assert len(list((out / "coco" / split).glob("*.png"))) == n
        assert len(list((ann / f"panoptic_{split}").glob("*.png"))) == n
        assert len(list((out / "imagefolder" / split).glob("*/*.png"))) == n
        assert len(list((out / "ade" / "images" / ade_split).glob("*.png"))) == n
        assert len(list((out / "ade" / "annotations" / ade_split).glob("*.png"))) == n
        assert len((out / "manifest" / f"{split}.jsonl").read_text().splitlines()) == n
        for img in (out / "coco" / split).glob("*.png"):  # one image, three layouts, same bytes
            assert (out / "ade" / "images" / ade_split / img.name).read_bytes() == img.read_bytes()
    assert (out / "ade" / "classes.txt").read_text().splitlines() == list(ADE_CLASSES)
    assert not list(out.rglob("*.tmp")), "temporary files left behind"


def test_coco_json_loads_and_ids_are_unique(world):
    out, _ = world
    ids = {}
    for split in SPLITS:
        coco, by_image = _instances(out, split)
        caps = _coco(out / "coco" / "annotations" / f"captions_{split}.json")
        assert sorted(caps.getImgIds()) == sorted(coco.getImgIds())
        assert all(len(caps.imgToAnns[i]) == 5 for i in caps.getImgIds())
        assert [c["id"] for c in coco.loadCats(coco.getCatIds())] == list(range(1, len(THING_CLASSES) + 1))
        assert all(1 <= len(anns) <= 4 for anns in by_image.values())
        for img in coco.loadImgs(coco.getImgIds()):
            assert (out / "coco" / split / img["file_name"]).is_file()
        ids[split] = set(coco.getImgIds())
    assert not ids["train"] & ids["val"]


def test_instance_masks_match_area_bbox_and_panoptic(world):
    out, _ = world
    for split in SPLITS:
        coco, by_image = _instances(out, split)
        pan = json.loads((out / "coco" / "annotations" / f"panoptic_{split}.json").read_text())
        pan_by_image = {a["image_id"]: a for a in pan["annotations"]}
        for image_id, anns in by_image.items():
            ids = _panoptic_ids(out / "coco" / "annotations" / f"panoptic_{split}" /
                                pan_by_image[image_id]["file_name"])
            segments = pan_by_image[image_id]["segments_info"]
            for ann in anns:
                mask = mask_utils.decode(ann["segmentation"]).astype(bool)
                assert mask.sum() == ann["area"] >= min_visible_area(SIZE)
                assert list(mask_utils.toBbox(ann["segmentation"])) == ann["bbox"]
                assert np.array_equal(mask, coco.annToMask(ann).astype(bool))
                matches = [s for s in segments if s["category_id"] == ann["category_id"]
                           and np.array_equal(ids == s["id"], mask)]
                assert len(matches) == 1, f"instance {ann['id']} has no equal panoptic segment"


def test_panoptic_png_round_trips_to_segments_info(world):
    out, _ = world
    for split in SPLITS:
        pan = json.loads((out / "coco" / "annotations" / f"panoptic_{split}.json").read_text())
        cats = {c["id"]: c for c in pan["categories"]}
        thing_ids = sorted(c["id"] for c in cats.values() if c["isthing"])
        assert thing_ids == list(range(1, len(THING_CLASSES) + 1))
        assert {c["name"] for c in cats.values() if not c["isthing"]} == set(STUFF_CLASSES)
        for ann in pan["annotations"]:
            ids = _panoptic_ids(out / "coco" / "annotations" / f"panoptic_{split}" / ann["file_name"])
            in_png = Counter(ids[ids != 0].tolist())
            in_json = {s["id"]: s for s in ann["segments_info"]}
            assert set(in_png) == set(in_json)
            for seg_id, seg in in_json.items():
                assert in_png[seg_id] == seg["area"] and seg["category_id"] in cats and seg["iscrowd"] == 0
                ys, xs = np.nonzero(ids == seg_id)
                assert seg["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_ade_labels_agree_with_panoptic_categories(world):
    out, _ = world
    names = ["other"] + (out / "ade" / "classes.txt").read_text().splitlines()
    for split, ade_split in SPLITS.items():
        pan = json.loads((out / "coco" / "annotations" / f"panoptic_{split}.json").read_text())
        cat_name = {c["id"]: c["name"] for c in pan["categories"]}
        for ann in pan["annotations"]:
            ids = _panoptic_ids(out / "coco" / "annotations" / f"panoptic_{split}" / ann["file_name"])
            label_img = Image.open(out / "ade" / "annotations" / ade_split / ann["file_name"])
            assert label_img.mode == "L"
            label = np.asarray(label_img)
            expected = np.zeros_like(label)
            for seg in ann["segments_info"]:
                expected[ids == seg["id"]] = names.index(cat_name[seg["category_id"]])
            assert np.array_equal(label, expected)
            assert label.max() <= len(ADE_CLASSES)


def test_imagefolder_class_is_largest_visible_thing(world):
    out, summary = world
    for split in SPLITS:
        coco, by_image = _instances(out, split)
        files = sorted((out / "imagefolder" / split).glob("*/*.png"))
        assert sorted(int(p.stem) for p in files) == sorted(by_image)
        for path in files:
            anns = by_image[int(path.stem)]
            largest = max(anns, key=lambda a: a["area"])  # first of equals, as the generator promises
            assert path.parent.name == THING_CLASSES[largest["category_id"] - 1]
            assert path.read_bytes() == (out / "coco" / split / path.name).read_bytes()
    assert set(summary["class_counts"]["train"]) == set(THING_CLASSES)  # 24 train images cover all 8


def _nearest_colour(pixels: np.ndarray) -> str:
    median = np.median(pixels.astype(np.float64), axis=0)
    return min(COLOURS, key=lambda c: float(np.sum((median - np.array(COLOURS[c])) ** 2)))


def _phrase(count: int, colour: str, shape: str) -> str:
    if count == 1:
        return f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {shape}"
    return f"{NUMBER[count]} {colour} {shape}{'es' if shape.endswith('s') else 's'}"


def _shape_of(word: str) -> str:
    return next(s for s in THING_CLASSES if word in (s, s + "s", s + "es"))


def test_captions_state_true_counts_colours_and_positions(world):
    out, _ = world
    relation = re.compile(r"^(?:a|an|two|three|four) (\w+) (\w+) (left of|right of|above|below) "
                          r"(?:a|an|two|three|four|another) (\w+) (\w+)$")
    checked_relations = 0
    for split in SPLITS:
        coco, by_image = _instances(out, split)
        caps = _coco(out / "coco" / "annotations" / f"captions_{split}.json")
        for image_id, anns in by_image.items():
            image_path = out / "coco" / split / coco.imgs[image_id]["file_name"]
            image = np.asarray(Image.open(image_path).convert("RGB"))
            things = []  # (colour seen in the pixels, shape, box centre)
            for ann in anns:
                mask = mask_utils.decode(ann["segmentation"]).astype(bool)
                colour = _nearest_colour(image[mask])
                assert colour == ann["colour"]
                x, y, w, h = ann["bbox"]
                things.append((colour, THING_CLASSES[ann["category_id"] - 1], (x + w / 2, y + h / 2)))
            captions = [c["caption"] for c in sorted(caps.imgToAnns[image_id], key=lambda c: c["id"])]
            groups = Counter((c, s) for c, s, _ in things)
            for (colour, shape), count in groups.items():
                assert _phrase(count, colour, shape) in captions[0], (captions[0], groups)
            assert sum(groups.values()) == len(things)
            if len(things) > 1:
                assert captions[1].startswith(f"a picture of {NUMBER[len(things)]} shapes")
            match = relation.match(captions[2])
            if match:
                checked_relations += 1
                ca, sa, rel, cb, sb = match.groups()
                a = [p for c, s, p in things if (c, s) == (ca, _shape_of(sa))]
                b = [p for c, s, p in things if (c, s) == (cb, _shape_of(sb))]
                test = {"left of": lambda p, q: p[0] < q[0], "right of": lambda p, q: p[0] > q[0],
                        "above": lambda p, q: p[1] < q[1], "below": lambda p, q: p[1] > q[1]}[rel]
                assert any(test(p, q) for p in a for q in b if p is not q), captions[2]
    assert checked_relations >= 5


def test_manifest_regions_are_the_instances_then_the_stuff(world):
    out, _ = world
    for split in SPLITS:
        coco, by_image = _instances(out, split)
        ade = out / "ade" / "annotations" / ("training" if split == "train" else "validation")
        lines = [json.loads(line) for line in (out / "manifest" / f"{split}.jsonl").read_text().splitlines()]
        for entry in lines:
            image_path = (out / "manifest" / entry["image"]).resolve()
            assert image_path.is_file()
            anns = by_image[int(image_path.stem)]
            things, stuff = entry["regions"][:len(anns)], entry["regions"][len(anns):]
            xyxy = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
            assert [r["box"] for r in things] == xyxy
            for region, ann in zip(things, anns, strict=True):
                assert region["mask"] == ann["segmentation"]
                shape = THING_CLASSES[ann["category_id"] - 1]
                assert region["tags"] == [ann["colour"], shape]
                assert region["caption"].endswith(f"{ann['colour']} {shape}")
                assert region["captions"] == [region["caption"], f"a {shape}"]
            label = np.asarray(Image.open(ade / f"{image_path.stem}.png"))
            assert len(stuff) <= 2  # upper and lower background
            for region in stuff:  # the stuff mask is exactly its ADE class's pixels
                (name,) = region["tags"]
                mask = mask_utils.decode({"size": region["mask"]["size"],
                                          "counts": region["mask"]["counts"].encode()}).astype(bool)
                assert np.array_equal(mask, label == len(THING_CLASSES) + STUFF_CLASSES.index(name) + 1)
                assert name in region["caption"] and name in entry["caption"]
            assert {t for r in entry["regions"] for t in r["tags"]} <= set(entry["tags"])
            assert entry["caption"] == entry["captions"][0] and len(entry["captions"]) == 5


def test_same_seed_same_bytes_even_through_the_pool(world, tmp_path, monkeypatch):
    out, _ = world
    monkeypatch.setattr(world_module, "_PARALLEL_FROM", 1)  # second run draws in 2 worker processes
    generate_world(tmp_path / "again", num=NUM, size=SIZE, seed=SEED, progress=False)
    first, second = _files(out), _files(tmp_path / "again")
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []


def test_different_seed_different_images(world, tmp_path):
    out, _ = world
    generate_world(tmp_path / "other", num=NUM, size=SIZE, seed=SEED + 1, progress=False)
    a, b = _files(out / "coco" / "train"), _files(tmp_path / "other" / "coco" / "train")
    assert sorted(a) == sorted(b)
    assert sum(a[name] != b[name] for name in a) == len(a)


def test_rerun_replaces_a_world_but_refuses_foreign_folders(tmp_path):
    generate_world(tmp_path / "w", num=6, size=32, progress=False)
    summary = generate_world(tmp_path / "w", num=3, size=32, progress=False, val_fraction=0.0)
    assert summary["counts"] == {"train": 3, "val": 0}
    assert len(list((tmp_path / "w" / "coco" / "train").glob("*.png"))) == 3  # stale images removed
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="notes.txt"):
        generate_world(tmp_path / "mine", num=2, size=32, progress=False)
    with pytest.raises(ValueError, match="size"):
        generate_world(tmp_path / "x", num=2, size=8, progress=False)
