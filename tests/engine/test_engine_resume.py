"""Resumption: a run killed with SIGKILL and resumed ends where an uninterrupted run ends; half-written
checkpoints are never resumed from."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _toy_task import make_config, run
from safetensors.torch import load_file

from umgkit.engine import latest_checkpoint, list_checkpoints, read_metrics

RUNNER = Path(__file__).with_name("_run_toy.py")
# dropout exercises the RNG restore; save_every=3 puts checkpoints mid-epoch (8 updates per epoch)
COMMON = ["train.max_steps=24", "train.save_every=3", "train.eval_every=5", "train.keep_last=3",
          "task_options.dropout=0.2", "train.warmup_steps=2"]


def _trainable(trainer) -> dict[str, torch.Tensor]:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.slow
def test_resume_after_sigkill_follows_the_same_trajectory(tmp_path):
    ref_trainer, _ = run(make_config(tmp_path / "ref", COMMON))
    reference = _trainable(ref_trainer)

    out = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(RUNNER), str(out), *COMMON, "task_options.sleep=0.15"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while not any(step >= 9 for step, _ in list_checkpoints(out / "checkpoints")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint at step >= 9 within 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed_at = max(step for step, _ in list_checkpoints(out / "checkpoints"))
    assert 9 <= killed_at < 24
    # debris of a later, interrupted save: must be ignored (and swept) by resume=auto
    (out / "checkpoints" / "step_0000999").mkdir()
    (out / "checkpoints" / "ckpt-abcd1234.tmp").mkdir()

    trainer, _ = run(make_config(out, COMMON + ["train.resume=auto"]))
    assert trainer.step == 24
    resumed = _trainable(trainer)
    for name, value in reference.items():
        assert torch.allclose(resumed[name], value, atol=1e-6), name
    # metrics.jsonl holds one curve: rows the killed run wrote after its checkpoint were dropped
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl", "train/loss")]
    assert steps == list(range(1, 25))
    ref_loss = [r["train/loss"] for r in read_metrics(tmp_path / "ref" / "metrics.jsonl", "train/loss")]
    got_loss = [r["train/loss"] for r in read_metrics(out / "metrics.jsonl", "train/loss")]
    assert max(abs(a - b) for a, b in zip(ref_loss, got_loss, strict=True)) < 1e-6
    assert not list((out / "checkpoints").glob("*.tmp"))


def test_incomplete_checkpoints_are_ignored(tmp_path):
    trainer, _ = run(make_config(tmp_path, ["train.max_steps=4", "train.save_every=2"]))
    root = tmp_path / "checkpoints"
    assert [s for s, _ in list_checkpoints(root)] == [2, 4]
    # a later checkpoint without its `complete` marker and a temp dir of an interrupted save
    half = root / "step_0000006"
    half.mkdir()
    (half / "trainable.safetensors").write_bytes(b"garbage")
    (root / "ckpt-zz99.tmp").mkdir()
    assert latest_checkpoint(root) == root / "step_0000004"

    resumed, _ = run(make_config(tmp_path, ["train.max_steps=6", "train.save_every=2", "train.resume=auto"]))
    assert resumed.step == 6
    first = read_metrics(tmp_path / "metrics.jsonl", "train/loss")
    assert [r["step"] for r in first] == [1, 2, 3, 4, 5, 6]
    assert (half / "complete").is_file()  # the resumed run's own step-6 save replaced the debris
    # an explicitly named incomplete checkpoint is refused with a clear error
    half = root / "step_0000008"
    half.mkdir()
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        run(make_config(tmp_path / "other", ["train.max_steps=2", f"train.resume={half}"]))


def test_resume_auto_without_checkpoint_starts_fresh(tmp_path):
    trainer, _ = run(make_config(tmp_path, ["train.max_steps=3", "train.resume=auto"]))
    assert trainer.step == 3
    weights = load_file(str(tmp_path / "checkpoints" / "step_0000003" / "trainable.safetensors"))
    assert len(weights) == 4
