"""docs/quickstart.md as a new user runs it: every `umgkit` command of its code blocks, in order, as printed,
with only tiny-size overrides added (a small synthetic world, one training step, the quick demo)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import doc_blocks
import pytest

from umgkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "docs" / "quickstart.md"
WORLD = ["data.synthetic.out=world", "data.synthetic.num=96", "data.synthetic.size=64"]
TRAIN_TINY = [*WORLD, "data.root=world/imagefolder", "train.max_steps=1", "train.progress=false",
              "data.batch_size=4"]


def quickstart_commands() -> list[list[str]]:
    return doc_blocks.page_commands(QUICKSTART)


def tiny(argv: list[str]) -> list[str]:
    """The command with the overrides that shrink it; its own arguments stay as printed."""
    command = argv[0]
    if command == "demo":
        return [*argv, "--quick", "--only", "classification"]
    if command == "train":  # overrides go right after the config, before flags such as --resume
        return [argv[0], argv[1], *TRAIN_TINY, *argv[2:]]
    if command == "eval" and argv[1].endswith(".yaml"):  # a paper config on the tiny world, not ImageNet
        return [*argv, "data.root=world/imagefolder", "data.num_classes=8", "data.eval_batch_size=8"]
    return argv


def test_the_quickstart_lists_the_commands_it_promises():
    subcommands = [argv[0] for argv in quickstart_commands()]
    for expected in ("demo", "train", "list", "eval", "predict"):
        assert expected in subcommands
    assert any("--resume" in argv for argv in quickstart_commands())


@pytest.mark.slow
def test_every_quickstart_command_runs_as_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("configs", "docs"):  # commands name configs/... relative to the checkout
        (tmp_path / name).symlink_to(ROOT / name)
    for argv in quickstart_commands():
        if argv[0] == "predict":  # "my_photos/": some images of the user's own
            photos = tmp_path / argv[2]
            photos.mkdir(parents=True, exist_ok=True)
            for image in sorted((tmp_path / "world" / "imagefolder" / "val").rglob("*.png"))[:3]:
                shutil.copy(image, photos / image.name)
        code = main(tiny(argv))
        out = capsys.readouterr()
        assert code == 0, f"umgkit {' '.join(argv)} exited {code}:\n{out.err[-2000:]}"
        if argv[0] == "train" and "--resume" in argv:
            assert "resumed from step 1" in out.err
        if argv[0] == "eval":
            assert re.search(r"^top1: \d\.\d{4}$", out.out, flags=re.M), out.out
    saved = (tmp_path / "runs" / "adaptformer" / "model" / "config.yaml").read_text()
    assert "adapter: adaptformer" in saved and "bottleneck: 16" in saved and "rank" not in saved
    assert len(list((tmp_path / "preds" / "overlays").glob("*.png"))) == 3
