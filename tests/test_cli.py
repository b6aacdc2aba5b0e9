import json
import subprocess
import sys

import pytest
from pycocotools.coco import COCO

from umgkit.cli import main


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "umgkit.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for command in ("train", "eval", "data", "list", "demo"):
        assert command in out


@pytest.mark.parametrize("registry", ["backbones", "adapters", "heads", "tasks", "datasets"])
def test_list_every_registry(registry, capsys):
    assert main(["list", registry]) == 0
    assert capsys.readouterr().out.strip()


def test_list_datasets_names_every_reader(capsys):
    main(["list", "datasets"])
    out = capsys.readouterr().out
    for name in ("imagefolder", "csv", "coco_captions", "karpathy", "coco_instances", "coco_panoptic",
                 "ade20k", "seg_folder", "manifest"):
        assert name in out


def test_data_synth_writes_every_format(tmp_path, capsys):
    out = tmp_path / "w"
    assert main(["data", "synth", "--out", str(out), "--num", "20", "--size", "64", "--seed", "3"]) == 0
    assert "train: 16, val: 4" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "imagefolder" / "train").iterdir())  # class folders
    for split in ("train", "val"):
        assert len(COCO(str(out / "coco" / "annotations" / f"instances_{split}.json")).getImgIds()) > 0
        assert len(COCO(str(out / "coco" / "annotations" / f"captions_{split}.json")).getAnnIds()) > 0
        panoptic = json.loads((out / "coco" / "annotations" / f"panoptic_{split}.json").read_text())
        assert len(list((out / "coco" / "annotations" / f"panoptic_{split}").glob("*.png"))) == \
            len(panoptic["annotations"])
        lines = (out / "manifest" / f"{split}.jsonl").read_text().splitlines()
        assert len(lines) == (16 if split == "train" else 4)
    assert len(list((out / "ade" / "annotations" / "validation").glob("*.png"))) == 4


def test_config_error_exits_with_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: x\ntrain: {lrr: 1}\n")
    assert main(["train", str(bad)]) == 2
    assert "train.lrr" in capsys.readouterr().err


def test_world_reads_back_in_every_format_and_previews(tmp_path):
    from umgkit.data.synth import generate_world
    from umgkit.demo import preview_world
    from umgkit.demo.world import reader_counts

    generate_world(tmp_path / "world", num=12, size=64, seed=0)
    val = json.loads((tmp_path / "world" / "world.json").read_text())["counts"]["val"]
    assert val > 0
    assert dict(reader_counts(tmp_path / "world")) == {
        name: val for name in ("imagefolder", "coco_captions", "coco_instances", "coco_panoptic", "ade20k",
                               "manifest")}
    assert preview_world(tmp_path / "world", tmp_path / "preview.png").stat().st_size > 1000


def test_version_is_printed():
    import subprocess
    import sys

    import umgkit

    proc = subprocess.run([sys.executable, "-m", "umgkit.cli", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"umgkit {umgkit.__version__}"
