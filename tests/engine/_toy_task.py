"""A tiny regression task for engine tests, and the run builder shared by tests and `_run_toy.py`.

Model: frozen random "backbone" Linear(dim, hidden) + tanh, then a trainable LayerNorm, optional
dropout and a trainable Linear(hidden, 1) head; the target is a fixed random linear function of the
input, so the loss falls quickly. ``bad_every=k`` marks every k-th sample bad: the collate drops it
and reports ``num_skipped``, as the data layer does with ``data.skip_bad``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from umgkit.config import RunConfig, config_from_dict
from umgkit.engine import Trainer


class ToyModel(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.backbone = nn.Linear(dim, hidden)
        self.backbone.requires_grad_(False)
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, dim) -> (B,)
        return self.head(self.drop(self.norm(torch.tanh(self.backbone(x))))).squeeze(-1)


class ToyDataset(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, bad_every: int):
        self.x, self.y, self.bad_every = x, y, bad_every

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        bad = self.bad_every > 0 and i % self.bad_every == 0
        return {"x": self.x[i], "y": self.y[i], "bad": bad}


def collate(items: list[dict]) -> dict:
    good = [it for it in items if not it["bad"]]
    if not good:  # the data layer's contract for a batch whose every sample was skipped
        return {"num_skipped": len(items), "batch_size": 0}
    return {"x": torch.stack([it["x"] for it in good]), "y": torch.stack([it["y"] for it in good]),
            "num_skipped": len(items) - len(good), "skipped_here": len(items) - len(good)}


class ToyTask:
    def __init__(self, *, seed: int = 0, n_train: int = 64, n_val: int = 32, dim: int = 8, hidden: int = 16,
                 dropout: float = 0.0, sleep: float = 0.0, bad_every: int = 0):
        gen = torch.Generator().manual_seed(1234)  # data is fixed; `seed` only drives the model init
        x = torch.randn(n_train + n_val, dim, generator=gen)
        w = torch.randn(dim, generator=gen)
        y = torch.tanh(x @ w) + 0.5
        torch.manual_seed(seed)
        self.model = ToyModel(dim, hidden, dropout)
        self.train_dataset = ToyDataset(x[:n_train], y[:n_train], bad_every)
        self.val_dataset = ToyDataset(x[n_train:], y[n_train:], 0)
        self.collate_fn = collate
        self.sleep = sleep

    def training_step(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        if self.sleep:
            time.sleep(self.sleep)
        # Skipped samples count in the denominator, so the loss (and gradient) of a global batch is the
        # same however it is split over processes or accumulation steps, bad samples included.
        pred = model(batch["x"])
        return {"loss": ((pred - batch["y"]) ** 2).sum() / (len(pred) + batch["skipped_here"])}

    def evaluate(self, model: nn.Module, loader, accelerator) -> dict[str, float]:
        errs = []
        for batch in loader:
            err = (model(batch["x"]) - batch["y"]) ** 2
            errs.append(accelerator.gather_for_metrics(err))
        return {"mse": float(torch.cat(errs).mean())}

    def visualise(self, model: nn.Module, batch: dict, out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "pred.txt"
        path.write_text(" ".join(f"{v:.4f}" for v in model(batch["x"]).tolist()))
        return [path]


def make_config(out_dir: str | Path, overrides: list[str] = ()) -> RunConfig:
    base = {"task": "toy", "output_dir": str(out_dir), "seed": 0,
            "data": {"batch_size": 8},
            "train": {"max_steps": 30, "lr": 0.05, "weight_decay": 0.01, "log_every": 1,
                      "progress": False}}
    return config_from_dict(base, list(overrides))


def run(cfg: RunConfig) -> tuple[Trainer, dict[str, float]]:
    task = ToyTask(seed=cfg.seed, **cfg.task_options)
    trainer = Trainer(task, cfg)
    return trainer, trainer.fit()
