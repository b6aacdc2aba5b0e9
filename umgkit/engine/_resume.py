"""Where a run resumes from, checked before it writes anything, and the restore itself (`Trainer`'s part)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from .checkpoint import checkpoint_problem, find_resumable, load_checkpoint, remove_stale_temps

__all__ = ["Resuming"]

log = logging.getLogger(__name__)


class Resuming:
    """``train.resume``: finds and checks the checkpoint (`_find_resume_checkpoint`, called before the run
    claims its folder) and restores model, optimizer, schedule, RNG and data position (`_resume`). Mixed
    into `umgkit.engine.Trainer`, whose attributes (accelerator, cfg, output_dir, ...) it uses."""

    accelerator: Any
    cfg: Any
    output_dir: Path

    def _find_resume_checkpoint(self) -> Path | None:
        """The checkpoint ``train.resume`` asks for, checked before the run writes anything; None if fresh.

        ``auto`` takes the newest checkpoint that passes `checkpoint_problem` and reports each newer one it
        skipped; a path must pass itself. The batch layout must match the run's (data position).
        """
        acc, tc = self.accelerator, self.cfg.train
        root = self.output_dir / "checkpoints"
        if not tc.resume:
            return None
        if tc.resume == "auto":
            path, skipped = find_resumable(root)
            for bad, why in skipped:
                self._say(f"resume: skipped {bad}: {why}", logging.WARNING)
            if path is None and skipped:
                raise CheckpointError(f"train.resume=auto: no intact checkpoint in {root} (all "
                                      f"{len(skipped)} were skipped, see above); start over with "
                                      "--overwrite.")
            if path is None:
                self._say(f"resume: no checkpoint in {root} yet; starting fresh")
                return None
        else:
            path = Path(tc.resume)
            problem = checkpoint_problem(path)
            if problem is not None:
                raise CheckpointError(f"train.resume={tc.resume}: cannot resume from it: {problem}. Give "
                                      "a complete checkpoints/step_* folder, or auto for the newest intact "
                                      "one.")
        self._check_same_model(path)
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        global_batch = self.cfg.data.batch_size * acc.num_processes
        if (state["global_batch"], state["grad_accum"]) != (global_batch, tc.grad_accum):
            raise CheckpointError(
                f"{path} was written with a global batch of {state['global_batch']} and grad_accum "
                f"{state['grad_accum']}, this run has {global_batch} and {tc.grad_accum}; the data position "
                f"cannot be carried over. Resume with the same data.batch_size x processes and "
                f"train.grad_accum, or start over with --overwrite.")
        workers = state.get("stream_workers")
        if workers is not None and workers != self.cfg.data.num_workers:
            raise CheckpointError(
                f"{path} was written while streaming shards with data.num_workers={workers}; each worker "
                f"reads its own shards, so the stream position only carries over with the same count. "
                f"Resume with data.num_workers={workers}.")
        return path

    def _check_same_model(self, path: Path) -> None:
        """A checkpoint only fits the model it was trained with: compare ``model:`` with the run's saved
        config (the checkpoint's run, beside its ``checkpoints/``) and name what differs."""
        import yaml

        from umgkit.config import to_dict

        saved_file = path.parent.parent / "config.yaml"
        if not saved_file.is_file():
            return
        saved = (yaml.safe_load(saved_file.read_text(encoding="utf-8")) or {}).get("model", {})
        current = to_dict(self.cfg.model)
        differ = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if differ:
            shown = ", ".join(f"model.{k}: {saved.get(k)!r} there, {current.get(k)!r} here" for k in differ)
            raise CheckpointError(f"{path} belongs to a run trained with another model config ({shown}). "
                                  f"Resume it with its own config: umgkit train {saved_file} --resume")

    def _resume(self) -> Path | None:
        """Restore from the checkpoint `_find_resume_checkpoint` chose; None if the run starts fresh."""
        acc, path = self.accelerator, self._resume_from
        acc.wait_for_everyone()  # every process has looked before the main one sweeps temp dirs
        if acc.is_main_process:
            for stale in remove_stale_temps(self.output_dir / "checkpoints"):
                log.info("removed interrupted checkpoint write %s", stale)
        if path is None:
            return None
        state = load_checkpoint(acc, path, model=self.model, optimizer=self.optimizer,
                                scheduler=self.scheduler)
        self.step, self.epoch = state["step"], state["epoch"]
        self.batches_in_epoch = state["batches_in_epoch"]
        self.skipped_in_epoch = state["skipped_in_epoch"] if acc.is_main_process else 0
        self.skipped_per_epoch = list(state["skipped_per_epoch"])
        self.skipped_samples = sum(self.skipped_per_epoch)
        self._last_saved = self.step
        self._say(f"resumed from step {self.step} ({path}; epoch {self.epoch}, {self.batches_in_epoch} "
                  "batches into it)")
        return path
