"""Single-process training on the toy task: learning, frozen weights, checkpoint contents, schedule,
gradient accumulation and skipped-sample reporting."""

import json
import math

import pytest
import torch
from _toy_task import make_config, run
from safetensors.torch import load_file

from umgkit.engine import list_checkpoints, read_metrics


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 30-step run (warmup 3, cosine to 0.1 x lr) shared by the assertions below."""
    out = tmp_path_factory.mktemp("toy")
    cfg = make_config(out, ["train.warmup_steps=3", "train.min_lr_ratio=0.1", "train.save_every=10",
                            "train.eval_every=10", "train.keep_last=2", "train.clip_grad=1.0"])
    from _toy_task import ToyTask

    before = {n: p.clone() for n, p in ToyTask(seed=cfg.seed).model.named_parameters()}
    trainer, metrics = run(cfg)
    return out, trainer, metrics, before


def test_loss_decreases_and_frozen_params_unchanged(trained):
    out, trainer, metrics, before = trained
    losses = [r["train/loss"] for r in read_metrics(out / "metrics.jsonl", "train/loss")]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    model = trainer.accelerator.unwrap_model(trainer.model)
    params = dict(model.named_parameters())
    for name in ("backbone.weight", "backbone.bias"):
        assert torch.equal(params[name], before[name])
    assert not torch.equal(params["head.weight"], before["head.weight"])
    assert metrics["mse"] < 0.5 and (out / "vis" / "pred.txt").is_file()


def test_checkpoint_holds_only_trainable_state(trained):
    out, trainer, _, _ = trained
    steps = [s for s, _ in list_checkpoints(out / "checkpoints")]
    assert steps == [20, 30]  # keep_last=2 pruned step 10
    ckpt = out / "checkpoints" / "step_0000030"
    weights = load_file(str(ckpt / "trainable.safetensors"))
    assert sorted(weights) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert torch.equal(weights["head.weight"], model.head.weight.detach())
    opt = load_file(str(ckpt / "optimizer.safetensors"))
    assert {k.rsplit(".", 1)[1] for k in opt} == {"step", "exp_avg", "exp_avg_sq"} and len(opt) == 12
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 30 and state["epoch"] == 3 and state["batches_in_epoch"] == 6
    assert not list((out / "checkpoints").glob("*.tmp"))
    assert (out / "config.yaml").is_file() and list((out / "tb").iterdir())


def test_groups_and_logged_lr_schedule(trained):
    out, trainer, _, _ = trained
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["names"] == ["head.weight"] and decay["weight_decay"] == 0.01
    assert sorted(no_decay["names"]) == ["head.bias", "norm.bias", "norm.weight"]
    assert no_decay["weight_decay"] == 0.0
    lr = {r["step"]: r["train/lr"] for r in read_metrics(out / "metrics.jsonl", "train/lr")}
    # the row of step s reports the lr that update s-1 (0-based) used: warmup s/3 x 0.05, then cosine
    assert lr[1] == pytest.approx(0.05 / 3)
    assert lr[3] == pytest.approx(0.05) and lr[4] == pytest.approx(0.05)  # update 3 starts the cosine
    assert lr[5] == pytest.approx(0.05 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 1 / 27))))
    assert lr[17] == pytest.approx(0.05 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 13 / 27))))
    assert lr[30] == pytest.approx(0.05 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 26 / 27))))
    val = read_metrics(out / "metrics.jsonl", "val/mse")
    assert [r["step"] for r in val] == [10, 20, 30]


def test_grad_accumulation_matches_larger_batch(tmp_path):
    common = ["train.max_steps=12", "train.save_every=0", "task_options.bad_every=5"]
    run(make_config(tmp_path / "big", common + ["data.batch_size=8"]))
    run(make_config(tmp_path / "acc", common + ["data.batch_size=4", "train.grad_accum=2"]))
    big = [r["train/loss"] for r in read_metrics(tmp_path / "big" / "metrics.jsonl", "train/loss")]
    acc = [r["train/loss"] for r in read_metrics(tmp_path / "acc" / "metrics.jsonl", "train/loss")]
    assert len(big) == len(acc) == 12
    assert max(abs(a - b) for a, b in zip(big, acc, strict=True)) < 1e-5


def test_skipped_samples_are_counted_and_reported(tmp_path, capfd):
    # bad_every=5 marks samples 0, 5, ..., 60 of the 64 train samples: 13 per epoch
    trainer, _ = run(make_config(tmp_path, ["train.max_steps=16", "task_options.bad_every=5",
                                            "train.progress=true"]))
    assert trainer.skipped_per_epoch == [13, 13] and trainer.skipped_samples == 26
    lines = capfd.readouterr().err.replace("\r", "\n").splitlines()  # a bar redraw starts with \r
    assert lines.count("warning: epoch 1: skipped 13 bad samples (data.skip_bad)") == 1
    rows = read_metrics(tmp_path / "metrics.jsonl", "train/skipped")
    assert [(r["step"], r["train/skipped"]) for r in rows] == [(8, 13.0), (16, 13.0)]


def test_batches_with_every_sample_skipped_take_a_zero_step(tmp_path):
    cfg = make_config(tmp_path, ["train.max_steps=4", "task_options.bad_every=1", "train.weight_decay=0"])
    from _toy_task import ToyTask

    before = {k: v.clone() for k, v in ToyTask(seed=cfg.seed, **cfg.task_options).model.state_dict().items()}
    trainer, _ = run(cfg)
    assert trainer.step == 4 and trainer.skipped_per_epoch[0] == 32  # 4 steps x batch 8, all bad
    after = trainer.accelerator.unwrap_model(trainer.model).state_dict()
    assert all(torch.equal(before[k], after[k].cpu()) for k in before)  # zero loss, no decay: no change


def test_precision_can_change_between_runs_in_one_process(tmp_path):
    trainer, _ = run(make_config(tmp_path / "bf16", ["train.max_steps=2", "train.mixed_precision=bf16"]))
    assert trainer.accelerator.mixed_precision == "bf16"
    losses = [r["train/loss"] for r in read_metrics(tmp_path / "bf16" / "metrics.jsonl", "train/loss")]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    trainer, _ = run(make_config(tmp_path / "fp32", ["train.max_steps=1"]))
    assert trainer.accelerator.mixed_precision == "no"
