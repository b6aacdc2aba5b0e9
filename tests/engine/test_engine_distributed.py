"""Two CPU processes (torchrun, gloo) with per-process batch 4 log the same curve as one with batch 8."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _toy_task import make_config, run

from umgkit.engine import read_metrics

RUNNER = Path(__file__).with_name("_run_toy.py")
# bad_every=5: the skipped-sample count must be summed over both processes (13 per epoch)
COMMON = ["train.max_steps=12", "train.save_every=6", "task_options.bad_every=5", "train.warmup_steps=2"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), str(RUNNER), str(two), *COMMON, "data.batch_size=4"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "skipped 13 bad samples" in done.stderr
    metrics_two = json.loads(done.stdout.split("METRICS ", 1)[1].splitlines()[0])

    one = tmp_path / "one"
    trainer, metrics_one = run(make_config(one, COMMON + ["data.batch_size=8"]))
    assert trainer.skipped_per_epoch[0] == 13  # then a partial epoch 1 (12 updates = 1.5 epochs)

    curve_two = read_metrics(two / "metrics.jsonl", "train/loss")
    curve_one = read_metrics(one / "metrics.jsonl", "train/loss")
    assert [r["step"] for r in curve_two] == list(range(1, 13))
    diffs = [abs(a["train/loss"] - b["train/loss"]) for a, b in zip(curve_one, curve_two, strict=True)]
    assert max(diffs) < 1e-5
    skipped = [r["train/skipped"] for r in read_metrics(two / "metrics.jsonl", "train/skipped")]
    assert skipped == trainer.skipped_per_epoch  # summed over both processes, per epoch
    assert abs(metrics_two["mse"] - metrics_one["mse"]) < 1e-5
    ckpt = two / "checkpoints" / "step_0000012"
    assert (ckpt / "rng_rank0.safetensors").is_file() and (ckpt / "rng_rank1.safetensors").is_file()


@pytest.mark.slow
def test_two_processes_accumulating_match_one_large_batch(tmp_path):
    """accelerator.accumulate on 2 processes (batch 2 x 2 micro-batches each, gradients synchronised only
    on the last) gives the curve of one process with batch 8; bad samples are skipped as above."""
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), str(RUNNER), str(two), *COMMON, "data.batch_size=2", "train.grad_accum=2"]
    done = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one = tmp_path / "one"
    run(make_config(one, COMMON + ["data.batch_size=8"]))
    curve_two = read_metrics(two / "metrics.jsonl", "train/loss")
    curve_one = read_metrics(one / "metrics.jsonl", "train/loss")
    assert [r["step"] for r in curve_two] == list(range(1, 13))
    diffs = [abs(a["train/loss"] - b["train/loss"]) for a, b in zip(curve_one, curve_two, strict=True)]
    assert max(diffs) < 1e-5
