"""The generic trainer: a plain PyTorch loop on Hugging Face Accelerate, driven by a `Task` and a `RunConfig`.

The same code runs as one process or as several (``torchrun``): Accelerate shards the data loaders,
wraps the model for gradient all-reduce and applies mixed precision; everything else (accumulation,
clipping, schedule, logging, checkpoints) is written out here so the loop can be read top to bottom.

Data order is a pure function of ``(seed, epoch)``: Accelerate's seedable sampler draws one global
permutation and each process takes every ``num_processes``-th batch of it, so one process with batch
B and two with B/2 see the same samples in each optimizer step, and a resumed run can rebuild the
order of the epoch it stopped in and skip what was already consumed. A sample's random augmentation
is a pure function of ``(seed, epoch, index)`` too (`SeededItems`), so it does not matter which process
or worker loads it, or how far ahead the loader reads.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from ..errors import ConfigError, DatasetError
from ._accel import make_accelerator
from ._loader_options import loader_options
from ._resume import Resuming
from ._seed import SeededItems, seed_everything
from ._window import StepWindow, batch_size
from .checkpoint import (
    save_checkpoint,
)
from .evaluate import run_evaluation, val_loader
from .optim import build_optimizer, build_scheduler
from .run_folder import claim_run_folder
from .strategy import prepare_model
from .task import Task
from .tracking import RunLogger

__all__ = ["Trainer"]

log = logging.getLogger(__name__)


class Trainer(Resuming):
    """Trains ``task.model`` as ``cfg.train`` says and evaluates it with ``task.evaluate``.

    Writes under ``cfg.output_dir``: ``config.yaml`` (resolved config), ``metrics.jsonl`` and ``tb/``
    (scalars), ``checkpoints/step_XXXXXXX/`` (see `umgkit.engine.checkpoint`) and ``vis/`` (pictures
    from ``task.visualise``). ``task.training_step`` must call ``model(...)`` (the prepared wrapper),
    so that multi-process gradient synchronisation and autocast apply.

    Example:
        >>> metrics = Trainer(task, cfg).fit()  # doctest: +SKIP
    """

    def __init__(self, task: Task, cfg: Any, *, accelerator: Any = None):
        self.task, self.cfg = task, cfg
        self.output_dir = Path(cfg.output_dir)
        tc = cfg.train
        if tc.grad_accum < 1:
            raise ConfigError(f"train.grad_accum must be >= 1, got {tc.grad_accum}.")
        self.accelerator = acc = accelerator or make_accelerator(tc.mixed_precision, cfg.seed, tc.grad_accum)
        if acc.gradient_accumulation_steps != tc.grad_accum:
            raise ConfigError(f"train.grad_accum is {tc.grad_accum} but the Accelerator passed to Trainer "
                              f"accumulates {acc.gradient_accumulation_steps} steps; make them equal.")
        seed_everything(cfg.seed)
        # Before anything is written: the checkpoint to resume from, or the folder made this run's own.
        self._resume_from = self._find_resume_checkpoint()
        if self._resume_from is None and acc.is_main_process:
            why = "train.overwrite" if tc.overwrite else "a start that never trained"
            for name in claim_run_folder(self.output_dir, overwrite=tc.overwrite):
                self._say(f"{why}: removed {self.output_dir / name} of the previous run")
        acc.wait_for_everyone()

        prepare_model(task.model, acc, cfg)  # fp32 trainables, FSDP units, DeepSpeed clipping check
        # A training-free model (a frozen backbone with Tip-Adapter's cache) has nothing to optimize: the run
        # takes no step and is evaluated (and saved) as the task built it.
        self.trains = any(p.requires_grad for p in task.model.parameters())
        if not self.trains:
            self._say("nothing trains: the model has no trainable parameter (a training-free head); the run "
                      "takes no step and evaluates the model as built")
        train_loader, val_loader = self._build_loaders()
        self.streaming = isinstance(task.train_dataset, IterableDataset)
        # DDP refuses a module without trainable parameters: a training-free one is only moved to the device.
        fitted = (task.model, build_optimizer(task.model, lr=tc.lr, weight_decay=tc.weight_decay,
                                              betas=tc.betas)) if self.trains else ()
        to_prepare = fitted + (() if self.streaming else (train_loader,))
        prepared = list(acc.prepare(*to_prepare, *(() if val_loader is None else (val_loader,))))
        if self.trains:
            self.model, self.optimizer = prepared[0], prepared[1]
        else:
            self.model, self.optimizer = task.model.to(acc.device), None
        # A stream reads its own shards on each process: it is not resharded by Accelerate.
        self.train_loader = train_loader if self.streaming else prepared[len(fitted)]
        self.val_loader = None if val_loader is None else prepared[-1]
        if val_loader is None and not cfg.data.val_split:
            self._say("data.val_split is empty: training without evaluation; the run ends with no metrics",
                      logging.WARNING)
        if self.streaming:
            self.batches_per_epoch = task.train_dataset.batches_per_epoch(
                cfg.data.batch_size, acc.num_processes, cfg.data.num_workers)
        else:
            self.batches_per_epoch = len(self.train_loader)
        if self.batches_per_epoch == 0 and self.trains:
            size = task.train_dataset.num_samples if self.streaming else len(task.train_dataset)
            raise DatasetError(
                f"the train split '{cfg.data.train_split}' of {cfg.data.root} has {size} "
                f"samples, fewer than one global batch (data.batch_size {cfg.data.batch_size} x "
                f"{acc.num_processes} processes); lower data.batch_size or add data.")
        self.steps_per_epoch = -(-self.batches_per_epoch // tc.grad_accum)
        self.total_steps = tc.max_steps if tc.max_steps > 0 else tc.epochs * self.steps_per_epoch
        self.total_steps = self.total_steps if self.trains else 0
        self.scheduler = build_scheduler(self.optimizer, total_steps=self.total_steps,
                                         warmup_steps=tc.warmup_steps, min_lr_ratio=tc.min_lr_ratio
                                         ) if self.trains else None
        self._trainable = [p for p in self.model.parameters() if p.requires_grad]
        self._step_keys: tuple[str, ...] = ()  # keys training_step returns, reused for empty batches
        self._last_batch: Any = None  # stands in for a batch of skipped samples (see _step_output)
        self.step = 0  # optimizer updates done
        self.epoch = 0  # current epoch (0-based)
        self.batches_in_epoch = 0  # per-process micro-batches of `epoch` consumed
        self.skipped_in_epoch = 0  # bad samples skipped so far in `epoch` (this process; see _save)
        self.skipped_per_epoch: list[int] = []  # all processes, one entry per finished epoch
        self.skipped_samples = 0  # all processes, all finished epochs
        self._last_saved = -1

    # ------------------------------------------------------------------ public
    def fit(self) -> dict[str, float]:
        """Train to ``total_steps`` (resuming if ``train.resume`` says so); returns the final val metrics."""
        acc, tc = self.accelerator, self.cfg.train
        resumed_from = self._resume()
        if acc.is_main_process:
            from umgkit.config import save_config

            save_config(self.cfg, self.output_dir / "config.yaml")
        # A resumed run keeps its rows up to the checkpoint's step; a fresh one starts an empty file.
        self.logger = RunLogger(self.output_dir, enabled=acc.is_main_process,
                                resume_step=self.step if resumed_from or tc.resume else None)
        from tqdm.auto import tqdm

        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", dynamic_ncols=True,
                   disable=not (acc.is_main_process and tc.progress))
        try:
            self.model.train()
            while self.step < self.total_steps:
                self._train_epoch(bar)
            if self._last_saved != self.step and self.trains:
                self._save()  # before the report below, so the checkpoint keeps the mid-epoch position
            if self.batches_in_epoch > 0:  # max_steps stopped mid-epoch: report what that part skipped
                self._end_epoch(partial=True)
            metrics = self.evaluate()
            self.logger.log(self.step, {f"val/{k}": v for k, v in metrics.items()})
            self._visualise()
        finally:
            bar.close()
            self.logger.close()
        return metrics

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Whole trainable tensors by name on the main process ({} elsewhere); gathers shards under FSDP /
        ZeRO-3, so every process must call it."""
        from .checkpoint import gathered_trainable

        return gathered_trainable(self.accelerator, self.model)

    def evaluate(self) -> dict[str, float]:
        """``task.evaluate`` over the val split on every process (no grad, eval mode); {} without one."""
        if self.val_loader is None:
            return {}
        return run_evaluation(self.task, self.model, self.val_loader, self.accelerator)

    # ------------------------------------------------------------------ loop
    def _step_output(self, batch: Any) -> dict[str, torch.Tensor]:
        """The task's step. For a batch whose every sample the data layer skipped, every process must
        still run the step's collectives (DDP's forward and gradient all-reduce, a task's gathers): the
        task's own ``empty_batch()`` when it has one (pretraining: zero images), else the last batch
        this process trained on, with every output multiplied by 0 (it adds nothing to the update).
        """
        if isinstance(batch, dict) and batch.get("batch_size") == 0:
            make_empty = getattr(self.task, "empty_batch", None)
            if make_empty is not None:
                from accelerate.utils import send_to_device

                return self.task.training_step(self.model, send_to_device(make_empty(),
                                                                          self.accelerator.device))
            if self.accelerator.num_processes == 1:  # nothing to keep in step with
                zero = sum(p.sum() * 0.0 for p in self._trainable)
                return {key: zero for key in self._step_keys or ("loss",)}
            if self._last_batch is None:
                raise DatasetError(
                    f"process {self.accelerator.process_index}: the first batch had no readable sample "
                    f"(data.skip_bad) and task {type(self.task).__name__} has no empty_batch() to run "
                    "its step on; the other processes would wait for it. Fix or remove the bad samples "
                    "at the start of the data, or raise data.batch_size.")
            out = self.task.training_step(self.model, self._last_batch)
            return {key: value * 0.0 for key, value in out.items()}
        out = self.task.training_step(self.model, batch)
        self._step_keys, self._last_batch = tuple(out), batch
        return out

    def _epoch_loader(self) -> Any:
        """This epoch's train loader, positioned after the batches a resumed run already consumed."""
        self._train_gen.manual_seed(self.cfg.seed + self.epoch)  # worker seeds: a function of the epoch
        if self._train_items is not None:
            self._train_items.set_epoch(self.epoch)  # augmentation: a function of (seed, epoch, index)
        if self.streaming:
            from umgkit.data.shards import StreamPlan

            self.task.train_dataset.plan(StreamPlan(
                epoch=self.epoch, seed=self.cfg.seed, batch_size=self.cfg.data.batch_size,
                batches=self.batches_per_epoch, start_batch=self.batches_in_epoch))
            return self.train_loader
        self.train_loader.set_epoch(self.epoch)
        if self.batches_in_epoch:
            from accelerate import skip_first_batches

            return skip_first_batches(self.train_loader, self.batches_in_epoch)
        return self.train_loader

    def _train_epoch(self, bar: Any) -> None:
        acc, tc = self.accelerator, self.cfg.train
        loader = self._epoch_loader()
        window = StepWindow(acc.device)
        n_micro = 1
        for batch in loader:
            if isinstance(batch, dict) and "num_skipped" in batch:
                self.skipped_in_epoch += int(batch.pop("num_skipped"))
            index = self.batches_in_epoch % tc.grad_accum
            if index == 0:  # size of this accumulation group; the epoch's last one may be short
                n_micro = min(tc.grad_accum, self.batches_per_epoch - self.batches_in_epoch)
            # Accelerate syncs gradients on the group's last micro-batch (or the loader's last) and
            # divides the loss by grad_accum; a short last group is scaled back to a mean over its own.
            with acc.accumulate(self.model):
                with acc.autocast():
                    out = self._step_output(batch)
                acc.backward(out["loss"] * (tc.grad_accum / n_micro))
                last = acc.sync_gradients
            window.add_micro(out, batch_size(batch), n_micro)
            self.batches_in_epoch += 1
            if not last:
                continue

            grad_norm = None
            if tc.clip_grad > 0:
                grad_norm = acc.clip_grad_norm_(self._trainable, tc.clip_grad)
            lr = self.optimizer.param_groups[0]["lr"]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            window.end_step(lr, grad_norm)
            bar.update(1)

            if self.step % max(1, tc.log_every) == 0 or self.step == self.total_steps:
                scalars = window.reduce(acc)
                self.logger.log(self.step, scalars)
                bar.set_postfix(loss=f"{scalars['train/loss']:.4g}")
                window = StepWindow(acc.device)
            if self.batches_in_epoch == self.batches_per_epoch:
                self._end_epoch()
            if tc.eval_every > 0 and self.step % tc.eval_every == 0 and self.step < self.total_steps:
                metrics = self.evaluate()
                self.logger.log(self.step, {f"val/{k}": v for k, v in metrics.items()})
            if tc.save_every > 0 and self.step % tc.save_every == 0:
                self._save()
            if self.step >= self.total_steps or self.batches_in_epoch == 0:
                break
        # Leaving a prepared loader early skips its own cleanup; without this Accelerate would still
        # treat it as the active loader (which `gather_for_metrics` and `accumulate` consult).
        if hasattr(loader, "end"):
            loader.end()

    def _end_epoch(self, partial: bool = False) -> None:
        """Sum the skipped-sample counts over processes and report them; start the next epoch."""
        count = torch.tensor([self.skipped_in_epoch], device=self.accelerator.device)
        total = int(self.accelerator.reduce(count, reduction="sum").item())
        self.skipped_per_epoch.append(total)
        self.skipped_samples += total
        if self.accelerator.is_main_process and total:
            what = "partial epoch" if partial else "epoch"
            self._say(f"{what} {self.epoch}: skipped {total} bad samples (data.skip_bad)", logging.WARNING)
        self.logger.log(self.step, {"train/epoch": self.epoch, "train/skipped": total})
        self.epoch += 1
        self.batches_in_epoch = 0
        self.skipped_in_epoch = 0

    # ------------------------------------------------------------------ pieces
    def _build_loaders(self) -> tuple[DataLoader, DataLoader | None]:
        """Loaders with their own generators, so iterating them never draws from the global RNG."""
        d, task = self.cfg.data, self.task
        if task.train_dataset is None:
            raise ValueError("this task was built without its train split (build_task(cfg, train=False)); "
                             "evaluate it with umgkit.engine.evaluate_task instead of training it.")
        if not isinstance(task.train_dataset, IterableDataset) and len(task.train_dataset) == 0:
            raise DatasetError(f"the train split '{d.train_split}' of {d.root} has no samples; check "
                               f"data.root and data.train_split (and data.limit={d.limit}).")
        self._train_gen = torch.Generator().manual_seed(self.cfg.seed)
        acc, items = self.accelerator, task.train_dataset
        if isinstance(items, IterableDataset):
            if not callable(getattr(items, "plan", None)):
                raise ConfigError(f"the train reader {type(items).__name__} is an iterable dataset the "
                                  "trainer cannot plan epochs for; use a map-style reader or "
                                  "data.format=webdataset.")
            self._train_items = None
            from accelerate.data_loader import DataLoaderShard

            # Batches are made in the workers, each from its own shards; DataLoaderShard moves them to
            # the device and tells `accelerator.accumulate` where the epoch ends, as a prepared loader does.
            train = DataLoaderShard(items, device=acc.device, _non_blocking=acc.device.type == "cuda",
                                    batch_size=d.batch_size, drop_last=True, collate_fn=task.collate_fn,
                                    **loader_options(d.num_workers, persistent=False))
            return train, val_loader(task, self.cfg)
        self._train_items = SeededItems(items, self.cfg.seed)
        # drop_last: every optimizer step sees a full global batch, on any process count.
        train = DataLoader(self._train_items, batch_size=d.batch_size, shuffle=True, drop_last=True,
                           collate_fn=task.collate_fn, generator=self._train_gen,
                           **loader_options(d.num_workers, persistent=True))
        return train, val_loader(task, self.cfg)

    def _state(self) -> dict[str, Any]:
        acc = self.accelerator
        return {"epoch": self.epoch, "batches_in_epoch": self.batches_in_epoch,
                "skipped_in_epoch": self.skipped_in_epoch, "skipped_per_epoch": self.skipped_per_epoch,
                "total_steps": self.total_steps, "num_processes": acc.num_processes,
                "global_batch": self.cfg.data.batch_size * acc.num_processes,
                "grad_accum": self.cfg.train.grad_accum, "seed": self.cfg.seed,
                "stream_workers": self.cfg.data.num_workers if self.streaming else None}

    def _save(self) -> None:
        # Skipped counts are per process until the epoch ends; store their sum (restored on rank 0).
        local = self.skipped_in_epoch
        count = torch.tensor([local], device=self.accelerator.device)
        self.skipped_in_epoch = int(self.accelerator.reduce(count, reduction="sum").item())
        state = self._state()
        self.skipped_in_epoch = local
        path = save_checkpoint(self.accelerator, self.output_dir / "checkpoints", step=self.step,
                               model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                               trainer_state=state, keep_last=self.cfg.train.keep_last)
        self._last_saved = self.step
        if self.accelerator.is_main_process:
            log.info("saved checkpoint %s", path)

    def _say(self, message: str, level: int = logging.INFO) -> None:
        """A line for the person watching (main process), above the progress bar, never glued to it."""
        if not self.accelerator.is_main_process:
            return
        import sys

        from tqdm.auto import tqdm

        tqdm.write(("warning: " if level >= logging.WARNING else "") + message, file=sys.stderr)

    def _visualise(self) -> None:
        """``task.visualise`` on the first val batch, main process only, into ``output_dir/vis``."""
        task, acc = self.task, self.accelerator
        if task.val_dataset is None or not callable(getattr(task, "visualise", None)):
            return
        if acc.is_main_process:
            loader = DataLoader(task.val_dataset, batch_size=self.cfg.data.eval_batch_size
                                or self.cfg.data.batch_size, collate_fn=task.collate_fn,
                                generator=torch.Generator().manual_seed(self.cfg.seed))
            batch = next(iter(loader), None)
            if batch is not None:
                from accelerate.utils import send_to_device

                if isinstance(batch, dict):
                    batch.pop("num_skipped", None)
                model = acc.unwrap_model(self.model)
                model.eval()
                with torch.no_grad():
                    task.visualise(model, send_to_device(batch, acc.device), self.output_dir / "vis")
                model.train()
        acc.wait_for_everyone()
