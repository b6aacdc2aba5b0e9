"""docs/fewshot.md and configs/fewshot/synthetic/ as a user runs them: every `umgkit` command of the page as
printed (tiny sizes added), and every method's config trained, saved, reloaded and asked for class names.

A random `umg:tiny_conv` saved where the demo's pretraining puts its backbone stands in for the pretrained
one (the accuracies of the page's table come from benchmarks/fewshot.py, not from here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import doc_blocks
import pytest
import torch

from umgkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "fewshot.md"
CONFIGS = ROOT / "configs" / "fewshot" / "synthetic"
TINY_WORLD = ["data.synthetic.num=160", "data.eval_batch_size=16"]
TINY_TRAIN = [*TINY_WORLD, "data.fewshot.shots=2", "train.max_steps=2", "train.progress=false",
              "data.batch_size=4"]
OPEN_VOCABULARY = {"coop", "cocoop", "clip_adapter", "clip_lora"}  # the rest keep their own classes
METHODS = sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem not in ("_base", "zeroshot"))


def page_commands() -> list[list[str]]:
    return doc_blocks.page_commands(PAGE)


def tiny(argv: list[str]) -> list[str]:
    """The command with overrides that shrink it, put before its own so that those win."""
    if argv[0] == "pretrain":
        return [*argv[:2], "data.synthetic.num=64", "train.max_steps=1", "train.progress=false",
                "data.batch_size=8", *argv[2:]]
    if argv[0] == "train":
        return [*argv[:2], *TINY_TRAIN, *argv[2:]]
    if argv[0] == "eval":
        return [*argv[:2], *TINY_WORLD, *argv[2:]]
    return argv


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder laid out like the checkout after `umgkit pretrain configs/demo/pretrain_tiny.yaml`."""
    from umgkit.backbones import create_backbone, save_umg_checkpoint

    base = tmp_path_factory.mktemp("fewshot")
    (base / "configs").symlink_to(ROOT / "configs")
    torch.manual_seed(0)
    save_umg_checkpoint(create_backbone("umg:tiny_conv"), base / "demo_out" / "pretrain" / "backbone")
    return base


def test_the_page_shows_pretraining_zero_shot_training_and_prediction():
    assert [argv[0] for argv in page_commands()] == ["pretrain", "eval", "train", "predict", "train", "train"]
    assert "python benchmarks/fewshot.py --update-docs docs/fewshot.md" in PAGE.read_text()
    assert "<!-- fewshot-table:start -->" in PAGE.read_text()


@pytest.mark.slow
def test_every_command_of_the_page_runs_as_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    for argv in page_commands():
        code = main(tiny(argv))
        out = capsys.readouterr()
        assert code == 0, f"umgkit {' '.join(argv)} exited {code}:\n{out.err[-2000:]}"
        if argv[0] == "eval":
            assert re.search(r"^top1: \d\.\d{4}$", out.out, flags=re.M), out.out
    lines = (tmp_path / "preds" / "coop" / "predictions.jsonl").read_text().splitlines()
    assert lines and {json.loads(line)["labels"][0] for line in lines} <= {"circle", "square", "star"}
    saved = (tmp_path / "runs" / "coop_k4_s2" / "config.yaml").read_text()
    assert "shots: 4" in saved and "seed: 2" in saved


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_each_method_config_trains_reloads_to_the_same_predictions_and_names_classes(
        method, workdir, monkeypatch, capsys):
    from umgkit import Predictor
    from umgkit.config import load_config
    from umgkit.tasks.run import train_and_save

    monkeypatch.chdir(workdir)
    run = Path("runs") / method
    cfg = load_config(CONFIGS / f"{method}.yaml", [*TINY_TRAIN, f"output_dir={run}", "train.overwrite=true"])
    task, _ = train_and_save(cfg)
    images = sorted(Path("demo_out/world_fewshot/imagefolder/val").rglob("*.png"))[:6]
    ran = Predictor(task.model)(images)
    reloaded = Predictor.from_pretrained(run)(images)
    for a, b in zip(ran, reloaded, strict=True):
        assert a.label_ids == b.label_ids
        assert a.scores == pytest.approx(b.scores, abs=1e-6)

    own = json.loads((run / "model" / "class_names.json").read_text())
    new = ["circle", "square", "star"]
    capsys.readouterr()
    code = main(["predict", str(run), str(images[0]), "--classes", ",".join(new), "--out", "preds/new"])
    if method in OPEN_VOCABULARY:
        assert code == 0
        assert json.loads(Path("preds/new/predictions.jsonl").read_text())["labels"][0] in new
    else:
        assert code == 2
        assert f"head '{method}'" in capsys.readouterr().err
        own_names = ["predict", str(run), str(images[0]), "--classes", ",".join(own), "--out", "preds/own"]
        assert main(own_names) == 0
