"""A task registered from user code (this file, not umgkit) works like a built-in one: train -> model folder
-> Predictor.from_pretrained -> predict with its own prediction type -> eval, from Python and the CLI.

The task regresses an image's mean colour: its own TaskModel subclass (no built-in model underneath), its
own Prediction type, the default writer (``predictions.jsonl``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from umgkit.cli import main
from umgkit.config import config_from_dict
from umgkit.data import build_dataset
from umgkit.data.collate import collate_dicts
from umgkit.errors import ConfigError
from umgkit.models import (
    Prediction,
    Predictor,
    PredictRequest,
    Preprocess,
    TaskModel,
    build_backbone,
    build_model,
    load_model,
)
from umgkit.registry import MODELS, TASKS
from umgkit.tasks.run import evaluate_saved, train_and_save

TASK = "test_mean_colour"


@dataclass
class MeanColourPrediction(Prediction):
    colour: list[float] = field(default_factory=list)  # predicted mean R, G, B of the normalised image

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "colour": self.colour}


@MODELS.register(TASK)
class MeanColourModel(TaskModel):
    """encode_image (B, F) -> Linear -> (B, 3) mean colour of the normalised image."""

    task = TASK
    prediction = MeanColourPrediction

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.encode_image(images))

    @classmethod
    def from_config(cls, cfg, class_names=None, **_: object) -> MeanColourModel:
        backbone, adapter = build_backbone(cfg.model)
        head = nn.Linear(backbone.embed_dim, 3)
        pre = Preprocess(cfg.data.image_size, backbone.image_mean, backbone.image_std, resize="square")
        return cls(backbone, head, preprocess=pre, adapter=adapter)

    def predict(self, batch, request: PredictRequest) -> list[MeanColourPrediction]:
        out = self(torch.stack([b.image for b in batch]).to(request.device)).cpu()
        return [self.prediction(b.source, b.image_id, b.rgb, colour=[round(v, 6) for v in row.tolist()])
                for b, row in zip(batch, out, strict=True)]


class MeanColourTask:
    def __init__(self, model: MeanColourModel, train_dataset, val_dataset) -> None:
        self.model, self.train_dataset, self.val_dataset = model, train_dataset, val_dataset
        self.collate_fn = collate_dicts

    def training_step(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        images = batch["image"]
        return {"loss": F.mse_loss(model(images), images.mean((2, 3)))}

    def evaluate(self, model: nn.Module, loader, accelerator) -> dict[str, float]:
        errors = []
        for batch in loader:
            images = batch["image"].to(accelerator.device)
            err = (model(images) - images.mean((2, 3))).pow(2).mean(1)  # (B,)
            errors.append(accelerator.gather_for_metrics(err).cpu())
        return {"mse": float(torch.cat(errors).mean())}

    def visualise(self, model, batch, out_dir: Path) -> list[Path]:
        return []


@TASKS.register(TASK)
def build_mean_colour_task(cfg, *, model=None, train=True) -> MeanColourTask:
    """Mean-colour regression (a test task)."""
    model = model if model is not None else build_model(cfg)
    tf = model.preprocess.transform()
    train_set = build_dataset(cfg.data, cfg.data.train_split, tf, "imagefolder") if train else None
    val = build_dataset(cfg.data, cfg.data.val_split, tf, "imagefolder")
    return MeanColourTask(model, train_set, val)


def _config(world: Path, out: Path):
    return config_from_dict({"task": TASK, "output_dir": str(out), "model": {"backbone": "umg:tiny"},
                             "data": {"root": str(world / "imagefolder"), "image_size": 32, "batch_size": 4},
                             "train": {"max_steps": 2, "progress": False, "lr": 0.01}})


def test_a_user_task_trains_saves_predicts_and_evaluates(small_world, tmp_path, capsys):
    run = tmp_path / "run"
    task, metrics = train_and_save(_config(small_world, run))
    assert isinstance(task, MeanColourTask) and set(metrics) == {"mse"}

    loaded = load_model(run)  # the model folder rebuilds the registered class and its trained head
    assert type(loaded) is MeanColourModel
    assert torch.equal(loaded.head.weight, task.model.head.weight.cpu())

    predictor = Predictor.from_pretrained(run)
    images = sorted((small_world / "imagefolder" / "val").rglob("*.png"))
    preds = predictor(images)
    assert [type(p) for p in preds] == [MeanColourPrediction] * len(images)
    with torch.no_grad():
        expected = loaded(torch.stack([loaded.preprocess.transform()({"image": _read(i)})["image"]
                                       for i in images]))
    assert torch.allclose(torch.tensor([p.colour for p in preds]), expected, atol=1e-5)

    _, again = evaluate_saved(run)  # what `umgkit eval` runs: the same number as the end of training
    assert again == metrics

    # the command line dispatches the same way (the task is registered in this process)
    val = small_world / "imagefolder" / "val"
    assert main(["predict", str(run), str(val), "--out", str(tmp_path / "p")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p" / "predictions.jsonl").read_text().splitlines()]
    assert [r["colour"] for r in rows] == [p.colour for p in preds]
    assert f"{TASK}: {len(images)} images predicted" in capsys.readouterr().out
    info = json.loads((run / "model" / "model.json").read_text())
    assert info["task"] == TASK and info["pipeline_tag"] == "image-feature-extraction"


def _read(path: Path) -> torch.Tensor:
    from umgkit.data.images import load_image

    return load_image(path)


def test_an_unregistered_task_names_the_ways_to_register_it():
    cfg = config_from_dict({"task": "test_nowhere", "model": {"backbone": "umg:tiny"}})
    with pytest.raises(ConfigError, match=r"task: task 'test_nowhere' has no model class .*umgkit\.plugins"):
        build_model(cfg)


def test_a_models_entry_must_be_its_tasks_model_class():
    @MODELS.register("test_wrong_task")
    class Wrong(MeanColourModel):
        pass  # inherits task = test_mean_colour

    cfg = config_from_dict({"task": "test_wrong_task", "model": {"backbone": "umg:tiny"}})
    with pytest.raises(TypeError, match=r"set task = 'test_wrong_task'"):
        build_model(cfg)
