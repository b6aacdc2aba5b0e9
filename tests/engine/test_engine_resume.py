"""Resumption: a run killed with SIGKILL and resumed ends where an uninterrupted run ends; half-written
checkpoints are never resumed from."""

import os
import shutil
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
from umgkit.engine.checkpoint import checkpoint_problem, find_resumable
from umgkit.errors import CheckpointError, RunFolderError

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
    with pytest.raises(CheckpointError, match="no 'complete' marker"):
        run(make_config(tmp_path / "other", ["train.max_steps=2", f"train.resume={half}"]))


def test_resume_auto_without_checkpoint_starts_fresh(tmp_path):
    trainer, _ = run(make_config(tmp_path, ["train.max_steps=3", "train.resume=auto"]))
    assert trainer.step == 3
    weights = load_file(str(tmp_path / "checkpoints" / "step_0000003" / "trainable.safetensors"))
    assert len(weights) == 4


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # inside the tensor data: the header still reads, only the checksum can tell
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated_weights": lambda ck: _truncate(ck / "trainable.safetensors"),
    "empty_state_json": lambda ck: (ck / "trainer_state.json").write_text(""),
    "missing_marker": lambda ck: (ck / "complete").unlink(),
    "flipped_optimizer_byte": lambda ck: _flip_last_byte(ck / "optimizer.safetensors"),
    "missing_rng_file": lambda ck: (ck / "rng_rank0.safetensors").unlink(),
}
STEPS = ["train.max_steps=8", "train.save_every=2", "train.keep_last=0", "task_options.dropout=0.2"]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_resume_falls_back_past_a_damaged_newest_checkpoint(tmp_path, damage, capfd):
    ref_trainer, _ = run(make_config(tmp_path / "ref", STEPS))
    reference = _trainable(ref_trainer)
    # The same run "killed" after saving step 6, whose files were then damaged.
    out = tmp_path / "damaged"
    shutil.copytree(tmp_path / "ref", out)
    shutil.rmtree(out / "checkpoints" / "step_0000008")
    newest = out / "checkpoints" / "step_0000006"
    DAMAGE[damage](newest)
    assert checkpoint_problem(newest) is not None
    assert find_resumable(out / "checkpoints")[0] == out / "checkpoints" / "step_0000004"
    capfd.readouterr()

    trainer, _ = run(make_config(out, STEPS + ["train.resume=auto"]))
    err = capfd.readouterr().err
    assert f"resume: skipped {newest}" in err
    assert "resumed from step 4" in err
    assert trainer.step == 8
    resumed = _trainable(trainer)
    for name, value in reference.items():
        assert torch.allclose(resumed[name], value, atol=1e-6), name
    assert checkpoint_problem(newest) is None  # the resumed run saved step 6 again, whole


def test_a_named_damaged_checkpoint_is_refused_with_its_reason(tmp_path):
    run(make_config(tmp_path, ["train.max_steps=2", "train.save_every=2"]))
    ckpt = tmp_path / "checkpoints" / "step_0000002"
    _truncate(ckpt / "trainable.safetensors")
    with pytest.raises(CheckpointError, match="trainable.safetensors does not match the checksum"):
        run(make_config(tmp_path / "other", ["train.max_steps=4", f"train.resume={ckpt}"]))


def test_resave_keeps_the_old_checkpoint_until_the_new_one_is_complete(tmp_path, monkeypatch):
    run(make_config(tmp_path, ["train.max_steps=2", "train.save_every=1"]))
    root = tmp_path / "checkpoints"
    old = (root / "step_0000002" / "trainable.safetensors").read_bytes()
    real_replace = os.replace

    def killed_before_the_new_folder_lands(src, dst):
        if Path(src).name.startswith("ckpt-"):
            raise OSError("killed")
        real_replace(src, dst)

    # Resuming from step 1 saves step 2 again; the process "dies" between moving the old step 2 aside
    # and renaming the new one into place.
    monkeypatch.setattr(os, "replace", killed_before_the_new_folder_lands)
    with pytest.raises(OSError, match="killed"):
        run(make_config(tmp_path, ["train.max_steps=2", "train.save_every=1",
                                   f"train.resume={root / 'step_0000001'}"]))
    monkeypatch.undo()
    aside = root / "step_0000002.replaced"
    assert not (root / "step_0000002").exists()
    assert checkpoint_problem(aside) is None
    assert (aside / "trainable.safetensors").read_bytes() == old
    assert find_resumable(root)[0] == aside


def test_a_fresh_run_never_writes_into_another_runs_folder(tmp_path):
    run(make_config(tmp_path, ["train.max_steps=2"]))
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(RunFolderError, match="--overwrite"):
        run(make_config(tmp_path, ["train.max_steps=3"]))
    assert (tmp_path / "metrics.jsonl").read_text() == before
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [2]

    trainer, _ = run(make_config(tmp_path, ["train.max_steps=3", "train.overwrite=true"]))
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [3]  # step 2 of the old run: gone
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl", "train/loss")] == [1, 2, 3]
