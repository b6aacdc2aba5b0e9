"""The coop_split reader on a small CoOp split file (split_zhou_*.json) written here."""

import json
from pathlib import Path

import pytest
from PIL import Image

from umgkit._builtins import import_builtins
from umgkit.config import DataConfig
from umgkit.data import DatasetError
from umgkit.data.build import build_dataset
from umgkit.registry import DATASETS

NAMES = ["abyssinian", "great_pyrenees", "samoyed"]


def _entries(split: str, per_class: int) -> list:
    return [[f"{name}/{split}_{i}.jpg", label, name] for label, name in enumerate(NAMES)
            for i in range(per_class)]


def write_split(root: Path, per_split=(("train", 4), ("val", 1), ("test", 2))) -> dict:
    """Images under root/images, the split file beside that folder (as CoOp lays it out)."""
    data = {split: _entries(split, n) for split, n in per_split}
    for entries in data.values():
        for path, label, _ in entries:
            (root / "images" / path).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (12, 10), (80 * label, 20, 40)).save(root / "images" / path)
    (root / "split_zhou_OxfordPets.json").write_text(json.dumps(data))
    return data


def read(root: Path, split: str, split_file="../split_zhou_OxfordPets.json", **kw):
    import_builtins()
    data = DataConfig(root=str(root / "images"), format="coop_split", options={"split_file": split_file},
                      **kw)
    return build_dataset(data, split, None, "imagefolder")


def test_reads_every_split_with_the_file_class_names(tmp_path):
    data = write_split(tmp_path)
    assert "coop_split" in DATASETS.names()
    counts = {split: len(read(tmp_path, split)) for split in ("train", "val", "test")}
    assert counts == {"train": 12, "val": 3, "test": 6}
    test = read(tmp_path, "test")
    assert test.class_names == NAMES
    items = [test[i] for i in range(len(test))]
    assert [it["label"] for it in items] == [0, 0, 1, 1, 2, 2]
    assert [Path(it["path"]).relative_to(tmp_path / "images").as_posix() for it in items] == [
        e[0] for e in data["test"]]
    assert tuple(items[0]["image"].shape) == (3, 10, 12)
    absolute = read(tmp_path, "train", split_file=str(tmp_path / "split_zhou_OxfordPets.json"), limit=5)
    assert len(absolute) == 5 and absolute.class_names == NAMES
    (tmp_path / "names.txt").write_text("Abyssinian cat\nGreat Pyrenees\nSamoyed\n")
    shown = read(tmp_path, "val", class_names=str(tmp_path / "names.txt"))
    assert shown.class_names == ["Abyssinian cat", "Great Pyrenees", "Samoyed"] and len(shown) == 3
    (tmp_path / "names.txt").write_text("Abyssinian cat\n")
    with pytest.raises(DatasetError, match="lists 1 names but .*split_zhou_OxfordPets.json has 3 classes"):
        read(tmp_path, "val", class_names=str(tmp_path / "names.txt"))


def _broken(tmp_path: Path, edit) -> Path:
    data = {"train": _entries("train", 2), "test": _entries("test", 1)}
    edit(data)
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "split_zhou_OxfordPets.json").write_text(json.dumps(data))
    return tmp_path


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["test"].__setitem__(1, ["x.jpg", 1, "beagle"]),
     r"split 'test', entry 1 names label 1 'beagle', but split 'train', entry 2 names it 'great_pyrenees'"),
    (lambda d: d["test"].__setitem__(0, ["x.jpg", 2, "abyssinian"]),
     r"split 'test', entry 0 names label 2 'abyssinian', but split 'train', entry 4 names it 'samoyed'"),
    (lambda d: d["train"].__setitem__(3, ["x.jpg", 1.0, "great_pyrenees"]),
     r"split 'train', entry 3 is \['x.jpg', 1.0, 'great_pyrenees'\]; expected \[image_path, integer label"),
    (lambda d: [e.__setitem__(1, 5) for e in d["train"] + d["test"] if e[1] == 2],
     r"labels go up to 5 but 2, 3, 4 never occur"),
    (lambda d: d["test"].append(["x.jpg", 3, "samoyed"]),
     r"split 'test', entry 3 gives class 'samoyed' label 3, but split 'train', entry 4 gives it label 2"),
])
def test_inconsistent_files_name_the_file_split_and_entry(tmp_path, edit, message):
    root = _broken(tmp_path, edit)
    with pytest.raises(DatasetError, match=message) as info:
        read(root, "train")
    assert "split_zhou_OxfordPets.json" in str(info.value)


def test_missing_split_file_or_split(tmp_path):
    write_split(tmp_path, per_split=(("train", 1), ("test", 1)))
    with pytest.raises(DatasetError, match=r"has no split 'val' \(it has: train, test\)"):
        read(tmp_path, "val")
    with pytest.raises(DatasetError, match="CoOp split file not found"):
        read(tmp_path, "train", split_file="split_zhou_OxfordPets.json")  # relative to the image folder
    with pytest.raises(DatasetError, match="needs data.options.split_file"):
        read(tmp_path, "train", split_file="")


def test_paper_zeroshot_config_evaluates_a_split_file(tmp_path):
    """configs/paper/fewshot/oxford_pets/zeroshot.yaml on a tiny split file, with umg:tiny for the weights."""
    from umgkit.tasks.run import evaluate_saved

    write_split(tmp_path)
    config = Path(__file__).resolve().parents[2] / "configs/paper/fewshot/oxford_pets/zeroshot.yaml"
    cfg, metrics = evaluate_saved(config, [
        "model.backbone=umg:tiny", f"data.root={tmp_path / 'images'}", "data.image_size=32",
        "data.num_classes=3", "data.num_workers=0", "data.fewshot.classes=novel"])
    assert (cfg.data.format, cfg.model.head, cfg.model.head_options["templates"]) == (
        "coop_split", "clip", "dataset:oxford_pets")
    assert set(metrics) == {"top1", "top5", "mean_class_acc"}
    assert metrics["top1"] == 1.0  # novel = the last of 3 classes: one class, every image right
