"""`umgkit train` on a tiny classification config through the CLI entry point."""

import json

import pytest
import torch
from safetensors.torch import load_file

from umgkit.cli import main
from umgkit.config import load_config
from umgkit.data.synth import generate_world
from umgkit.engine.checkpoint import latest_checkpoint
from umgkit.tasks import build_task


def test_cli_train_prints_metrics(tmp_path, capsys):
    generate_world(tmp_path / "world", num=40, size=32, seed=0, progress=False)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "task: classification\n"
        "model: {backbone: 'umg:tiny', adapter: frozen, head: linear}\n"
        "data: {image_size: 32, batch_size: 8, eval_batch_size: 16, train_split: train, val_split: train}\n"
        "train: {epochs: 2, lr: 0.01, progress: false}\n")
    out = tmp_path / "run"
    rc = main(["train", str(config), f"data.root={tmp_path / 'world' / 'imagefolder'}", f"output_dir={out}",
               f"task_options.cache_dir={tmp_path / 'cache'}"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "top1:" in printed and "top5:" in printed
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    # top-1 counted here: the run's saved config and final trainable weights on the cached val features
    cfg = load_config(out / "config.yaml")
    task = build_task(cfg)
    weights = load_file(latest_checkpoint(out / "checkpoints") / "trainable.safetensors")
    assert set(weights) == {n for n, p in task.model.named_parameters() if p.requires_grad}
    task.model.load_state_dict(weights, strict=False)
    val = task.val_dataset
    with torch.no_grad():  # batched as evaluated
        batches = val.features.split(cfg.data.eval_batch_size)
        logits = torch.cat([task.model.eval()(features=f) for f in batches])
    hits = int((logits.argmax(1) == val.labels).sum())
    assert last["val/top1"] == pytest.approx(hits / len(val), abs=1e-6)
    assert (out / "vis" / "confusion.png").is_file()
