"""Base-to-novel on the synthetic world: train on the base classes, `umgkit eval RUN
data.fewshot.classes=novel` evaluates the novel ones with their own names (open-vocabulary head only)."""

import pytest
import torch

from umgkit._builtins import import_builtins
from umgkit.cli import main
from umgkit.config import ConfigError, DataConfig, FewShotConfig, ModelConfig, RunConfig, TrainConfig
from umgkit.data.synth import generate_world
from umgkit.heads.classification import text_classifier_weights
from umgkit.models import load_model
from umgkit.tasks.build import build_task
from umgkit.tasks.run import evaluate_saved, train_and_save

SHAPES = ["circle", "cross", "diamond", "hexagon", "ring", "square", "star", "triangle"]  # sorted folders
TEMPLATES = ["a photo of a {}."]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("fewshot_world")
    generate_world(out, num=40, size=32, seed=0, progress=False)  # 4 train + 1 val image per class
    return out / "imagefolder"


def _train(world, out, head: str, adapter: str = "frozen", adapter_options=None):
    import_builtins()
    cfg = RunConfig(
        task="classification", output_dir=str(out), seed=0,
        model=ModelConfig(backbone="umg:tiny", adapter=adapter, head=head,
                          adapter_options=adapter_options or {},
                          head_options={"templates": TEMPLATES} if head == "text_init" else {}),
        data=DataConfig(root=str(world), image_size=32, batch_size=8, val_split="val",
                        fewshot=FewShotConfig(shots=2, classes="base")),
        train=TrainConfig(max_steps=2, progress=False))
    task, metrics = train_and_save(cfg)
    assert task.model.class_names == SHAPES[:4] and len(task.train_dataset) == 8
    return out


def test_open_vocabulary_head_is_evaluated_on_the_novel_names(world, tmp_path, capsys):
    run = _train(world, tmp_path / "run", "text_init")
    assert main(["eval", str(run), "data.fewshot.classes=novel"]) == 0
    printed = dict(line.split(": ") for line in capsys.readouterr().out.splitlines() if ": " in line)
    model = load_model(run, overrides=["data.fewshot.classes=novel"])
    task = build_task(model.config, model=model, train=False)
    assert task.class_names == task.model.class_names == SHAPES[4:]
    assert task.val_dataset.labels.tolist() == [0, 1, 2, 3]  # cached features (frozen adapter)
    rows = text_classifier_weights(model.backbone, SHAPES[4:], TEMPLATES)
    assert torch.allclose(task.model.head.weight, rows, atol=1e-6)  # zero-shot rows of the novel names
    with torch.no_grad():
        logits = task.model(features=task.val_dataset.features)
    hits = (logits.argmax(1) == torch.arange(4)).float().mean().item()
    assert float(printed["top1"]) == pytest.approx(hits, abs=1e-4)  # printed with 4 decimals


def test_learned_head_on_novel_classes_is_one_clear_error(world, tmp_path):
    run = _train(world, tmp_path / "run", "linear")
    message = r"data.fewshot.classes: the val set's novel classes \(ring, square, star, triangle\) are not"
    with pytest.raises(ConfigError, match=message + r" the 4 classes .* learned"):
        evaluate_saved(run, ["data.fewshot.classes=novel"])
    _, metrics = evaluate_saved(run, ["data.fewshot.classes=base"])
    assert set(metrics) == {"top1", "top5", "mean_class_acc"}


def test_coop_prompts_name_the_novel_classes(world, tmp_path):
    """CoOp's learned context (shared by the classes) with the clip head, trained on base, named novel."""
    run = _train(world, tmp_path / "run", "clip", adapter="coop", adapter_options={"n_ctx": 4})
    model = load_model(run, overrides=["data.fewshot.classes=novel"])
    task = build_task(model.config, model=model, train=False)
    assert task.model.class_names == task.model.head.class_names == SHAPES[4:]
    with torch.no_grad():
        assert tuple(task.model(features=task.val_dataset.features).shape) == (4, 4)
    _, metrics = evaluate_saved(run, ["data.fewshot.classes=novel"])
    assert set(metrics) == {"top1", "top5", "mean_class_acc"} and metrics["top5"] == 1.0  # 4 classes
