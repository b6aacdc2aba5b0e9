"""The ``pretrain`` task on the engine: it learns, its checkpoint loads as ``umg:``, resume is exact, and
``umgkit pretrain`` prints the three zero-shot figures."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_config
from safetensors.torch import load_file

from umgkit.backbones import create_backbone
from umgkit.backbones.umg import save_umg_checkpoint
from umgkit.cli import main
from umgkit.config import load_config
from umgkit.data.collate import collate_dicts
from umgkit.engine import Trainer, list_checkpoints
from umgkit.pretrain import run_pretrain
from umgkit.tasks.build import build_task


def _cfg(tmp_path, world, name, overrides=(), **train):
    path = tmp_path / f"{name}.yaml"
    path.write_text(tiny_config(world, tmp_path / name, **train))
    return load_config(path, list(overrides))


def test_pretrain_lowers_the_loss_and_checkpoint_loads_as_umg(tiny_world, tmp_path):
    cfg = _cfg(tmp_path, tiny_world, "fit", ["task_options.losses.region_tag=0.5"], max_steps=12)
    task = build_task(cfg)
    batch = collate_dicts([task.train_dataset[i] for i in range(8)])
    torch.manual_seed(0)

    def loss() -> dict:
        with torch.no_grad():
            return {k: float(v) for k, v in task.training_step(task.model, batch).items()}

    before = loss()
    Trainer(task, cfg).fit()
    after = loss()
    assert after["loss"] < before["loss"] - 0.5, (before, after)
    for key in ("loss_image_text", "loss_region_text", "loss_region_tag", "loss_sparc", "loss_pixel"):
        assert key in after
    model = task.model.eval()
    ckpt = save_umg_checkpoint(model.backbone, tmp_path / "backbone")
    loaded = create_backbone(f"umg:{ckpt}")
    images = batch["image"][:2]
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(images), model.backbone.encode_image(images))
        assert torch.equal(loaded.embed_pixels(images), model.backbone.embed_pixels(images))
        assert torch.equal(loaded.encode_text(["a red circle"]), model.backbone.encode_text(["a red circle"]))


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(tiny_world, tmp_path):
    full = run_pretrain(_cfg(tmp_path, tiny_world, "full", max_steps=4, save_every=2), echo=False)
    cfg = _cfg(tmp_path, tiny_world, "cut", ["task_options.zeroshot=none"], max_steps=4, save_every=2)
    run_pretrain(cfg, echo=False)
    shutil.rmtree(list_checkpoints(tmp_path / "cut" / "checkpoints")[-1][1])  # "crash" after step 2
    cfg.train.resume = "auto"
    resumed = run_pretrain(cfg, echo=False)
    a = load_file(f"{full['backbone']}/model.safetensors")
    b = load_file(f"{resumed['backbone']}/model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert set(full["zeroshot"]) == {"classification", "regions", "segmentation"}


@pytest.mark.slow
def test_cli_prints_three_zero_shot_figures(tiny_world, tmp_path, capsys):
    cfg = tmp_path / "cli.yaml"
    cfg.write_text(tiny_config(tiny_world, tmp_path / "cli", max_steps=2))
    assert main(["pretrain", str(cfg)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "(chance" in ln]
    assert [ln.split(":")[0] for ln in lines] == ["zero-shot image classification top-1",
                                                  "zero-shot region classification top-1",
                                                  "zero-shot segmentation mIoU"]
    assert create_backbone(f"umg:{tmp_path / 'cli' / 'backbone'}").embed_dim == 128
    assert (tmp_path / "cli" / "zeroshot.json").is_file()


def test_pretraining_starts_from_an_open_clip_file(tiny_world, tmp_path):
    import open_clip  # a required dependency: its absence is a failure, not a skip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    oc = open_clip.model.CLIP(  # umg:tiny's sizes
        embed_dim=128,
        vision_cfg={"image_size": 64, "patch_size": 8, "width": 128, "layers": 4, "head_width": 32},
        text_cfg={"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4})
    file = tmp_path / "open_clip.safetensors"
    save_file({k: v.contiguous() for k, v in oc.state_dict().items()}, str(file))
    cfg = _cfg(tmp_path, tiny_world, "init", [f"model.pretrained={file}"], max_steps=2)
    task = build_task(cfg)
    visual = task.model.backbone.visual
    assert torch.equal(visual.patch_embed.weight, oc.visual.conv1.weight)
    assert torch.equal(visual.norm_pre.weight, oc.visual.ln_pre.weight)
    start = visual.blocks[0].attn.qkv.weight.detach().clone()
    Trainer(task, cfg).fit()
    assert not torch.equal(visual.blocks[0].attn.qkv.weight, start)  # the file's weights are trained on


def test_region_describes_lists_every_true_caption():
    from umgkit.pretrain.losses import caption_hash_ids
    from umgkit.pretrain.task import region_describes

    batch = {"region_caption_sets": [[["a red circle", "a circle"]], [["grass"], ["a star", "a star"]]]}
    got = region_describes(batch, ["a circle", "grass", "a star"])
    assert got.shape == (3, 3)  # drawn caption + up to two alternatives
    assert torch.equal(got[0], caption_hash_ids(["a circle", "a red circle", "a circle"]))
    assert torch.equal(got[1], caption_hash_ids(["grass"] * 3))
    assert region_describes({"caption": ["x"]}, []) is None


@pytest.mark.slow
def test_a_process_with_no_sample_joins_and_the_step_equals_one_process(tiny_world, tmp_path):
    """Rank 0 has 0 images, rank 1 has 5: the loss and DDP's averaged gradients equal one process on
    the 5 (every loss, gathered or per-process, is weighted by its share of the rows), and both finish."""
    import json
    import os
    import socket
    import subprocess
    import sys

    here = Path(__file__).parent
    sys.path.insert(0, str(here))
    try:
        from _dist_pretrain_step import OVERRIDES, fixed_batch, step
    finally:
        sys.path.pop(0)
    config = tmp_path / "pretrain.yaml"
    config.write_text(tiny_config(tiny_world, tmp_path / "run"))
    out = tmp_path / "step.json"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(here / "_dist_pretrain_step.py"), str(config), str(out)]
    done = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=240)  # the guard: a process waiting on a skipped collective would hang
    assert out.is_file(), done.stderr[-3000:]
    ranks = json.loads(out.read_text())

    task = build_task(load_config(config, OVERRIDES))
    single = step(task, task.model, fixed_batch(task))
    assert ranks["losses"][0] == 0.0
    assert sum(ranks["losses"]) / 2 == pytest.approx(single, rel=1e-5)
    grads = {n: p.grad for n, p in task.model.named_parameters() if p.grad is not None}
    assert set(grads) == set(ranks["grads"]) and len(grads) > 50
    worst = max(float((torch.tensor(ranks["grads"][n]) - g).abs().max() / (g.abs().max() + 1e-12))
                for n, g in grads.items() if g.abs().max() > 1e-8)
    print(f"losses {ranks['losses']} single {single:.6f} worst relative gradient difference {worst:.2e}")
    assert worst < 1e-3


def _last_losses(run: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {k: v for k, v in [r for r in rows if "train/loss" in r][-1].items() if k.startswith("train/loss")}


@pytest.mark.slow  # two pretraining runs with zero-shot evaluation: 16-40 s on 2 shared cores
def test_cli_ablation_trains_image_only_and_multi_granularity_and_writes_the_table(tiny_world, tmp_path,
                                                                                    capsys):
    cfg = tmp_path / "ablation.yaml"
    cfg.write_text(tiny_config(tiny_world, tmp_path / "abl", max_steps=2))
    assert main(["pretrain", str(cfg), "--ablation"]) == 0
    runs = {name: tmp_path / "abl" / f"ablation_{name}" for name in ("image_only", "multi_granularity")}
    # the same steps and seed; only the loss weights differ: image-text alone vs the config's four
    losses = {name: yaml.safe_load((run / "config.yaml").read_text())["task_options"]["losses"]
              for name, run in runs.items()}
    assert losses["image_only"] == {"image_text": 1.0, "region_text": 0.0, "region_tag": 0.0, "sparc": 0.0,
                                    "pixel": 0.0}
    assert losses["multi_granularity"] == {**losses["image_only"], "region_text": 1.0, "sparc": 1.0,
                                           "pixel": 1.0}
    trained = {name: _last_losses(run) for name, run in runs.items()}
    assert set(trained["image_only"]) == {"train/loss", "train/loss_image_text"}
    assert trained["image_only"]["train/loss"] == trained["image_only"]["train/loss_image_text"]
    finer = {"train/loss_region_text", "train/loss_sparc", "train/loss_pixel"}
    assert set(trained["multi_granularity"]) == {"train/loss", "train/loss_image_text"} | finer
    for run in runs.values():
        assert create_backbone(f"umg:{run / 'backbone'}").embed_dim == 128

    table = (tmp_path / "abl" / "ablation.md").read_text().splitlines()
    assert table[0].startswith("| losses | image cls top-1 (chance 0.125) | region cls top-1 (chance ")
    assert table[0].endswith(" | final train loss |") and table[1] == "| --- | --- | --- | --- | --- |"
    for line, (name, run) in zip(table[2:], runs.items(), strict=True):
        z = json.loads((run / "zeroshot.json").read_text())
        cells = [z["classification"]["top1"], z["regions"]["top1"], z["segmentation"]["mIoU"],
                 trained[name]["train/loss"]]
        assert line == f"| {name} | " + " | ".join(f"{v:.4f}" for v in cells) + " |"
    assert "\n".join(table) in capsys.readouterr().out  # printed as written


def test_cli_ablation_needs_a_finer_loss(tiny_world, tmp_path, capsys):
    cfg = tmp_path / "image_only.yaml"
    cfg.write_text(tiny_config(tiny_world, tmp_path / "abl")
                   + "  losses: {image_text: 1.0, region_text: 0.0, sparc: 0.0, pixel: 0.0}\n")
    assert main(["pretrain", str(cfg), "--ablation"]) == 2
    assert "--ablation compares image-only with image+region+pixel losses" in capsys.readouterr().err
    assert not (tmp_path / "abl").exists()
