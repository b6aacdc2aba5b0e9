"""Classification task end to end on the synthetic world with umg:tiny (acceptance tests)."""

import pytest
import torch

from umgkit._builtins import import_builtins
from umgkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from umgkit.data.synth import generate_world
from umgkit.engine import Trainer
from umgkit.registry import HEADS, TASKS
from umgkit.tasks._build import build_task


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    generate_world(out, num=40, size=64, seed=0, progress=False)
    return out / "imagefolder"


def make_cfg(root, out, *, head="linear", adapter="lora", train=None, **task_options):
    import_builtins()
    return RunConfig(
        task="classification", output_dir=str(out), seed=0,
        model=ModelConfig(backbone="umg:tiny", adapter=adapter, head=head,
                          adapter_options={"rank": 8, "alpha": 16} if adapter == "lora" else {}),
        data=DataConfig(root=str(root), image_size=64, batch_size=8, eval_batch_size=32, limit=32,
                        train_split="train", val_split="train"),
        train=train or TrainConfig(epochs=1, progress=False),
        task_options=task_options)


def test_registered():
    import_builtins()
    assert {"linear", "text_init"} <= set(HEADS.names())
    assert "classification" in TASKS.names()


@pytest.mark.slow
def test_lora_linear_overfits_32_images(world, tmp_path):
    # 160 steps at lr 3e-3: at 1e-2 LoRA on the un-pretrained umg:tiny diverges (the loss never falls).
    cfg = make_cfg(world, tmp_path / "run", train=TrainConfig(epochs=40, lr=3e-3, warmup_steps=4,
                                                                weight_decay=0.0, progress=False),
                   crop_scale=[1.0, 1.0], hflip=0.0)
    task = build_task(cfg)  # seeded model init, as `umgkit train` does
    assert len(task.train_dataset) == 32
    trainable = {n.split(".")[0] for n, p in task.model.named_parameters() if p.requires_grad}
    assert trainable == {"backbone", "head"}  # adapter (inside the backbone) + head
    metrics = Trainer(task, cfg).fit()
    assert metrics["top1"] >= 0.95, metrics
    assert (tmp_path / "run" / "vis" / "confusion.png").is_file()


def test_zero_shot_text_init_evaluates_without_training(world, tmp_path):
    cfg = make_cfg(world, tmp_path / "zs", head="text_init", adapter="frozen", cache_features=False)
    cfg.model.head_options = {"templates": ["a photo of a {}.", "a {} shape."]}
    task = TASKS.build("classification", cfg=cfg)
    head = task.model.head
    assert head.weight.shape == (8, task.model.backbone.embed_dim)
    assert torch.allclose(head.weight.norm(dim=1), torch.ones(8), atol=1e-5)
    metrics = Trainer(task, cfg).evaluate()
    assert set(metrics) == {"top1", "top5", "mean_class_acc"}
    assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0


def test_unknown_task_option_names_key(world, tmp_path):
    with pytest.raises(ValueError, match="label_smothing"):
        TASKS.build("classification", cfg=make_cfg(world, tmp_path, label_smothing=0.1))


def test_cache_needs_frozen_adapter(world, tmp_path):
    with pytest.raises(ValueError, match="adapter=frozen"):
        TASKS.build("classification", cfg=make_cfg(world, tmp_path, cache_features=True))
