"""`umgkit train` on a tiny classification config through the CLI entry point."""

import json

from umgkit.cli import main
from umgkit.data.synth import generate_world


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
    assert 0.0 <= last["val/top1"] <= 1.0
    assert (out / "vis" / "confusion.png").is_file()
