"""Classification task end to end on the synthetic world with umg:tiny (acceptance tests)."""

import pytest
import torch
from torch.utils.data import DataLoader

from umgkit._builtins import import_builtins
from umgkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from umgkit.data.synth import generate_world
from umgkit.engine import Trainer
from umgkit.registry import HEADS, TASKS
from umgkit.tasks.build import build_task


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


def _recount(task, cfg) -> dict[str, float]:
    """top-1 / top-5 / mean per-class accuracy counted here from the model's logits on the val split."""
    loader = DataLoader(task.val_dataset, batch_size=cfg.data.eval_batch_size, collate_fn=task.collate_fn)
    logits, labels = [], []
    with torch.no_grad():
        for batch in loader:
            logits.append(task.model.eval()(images=batch["image"]))
            labels.append(batch["label"])
    logits, labels = torch.cat(logits), torch.cat(labels)
    assert logits.topk(2, dim=1).values.diff(dim=1).ne(0).all()  # no tie at the top: argmax is unambiguous
    top1 = logits.argmax(1) == labels
    top5 = (logits.topk(5, dim=1).indices == labels[:, None]).any(1)
    per_class = [top1[labels == c].float().mean() for c in labels.unique()]
    return {"top1": top1.float().mean().item(), "top5": top5.float().mean().item(),
            "mean_class_acc": torch.stack(per_class).mean().item()}


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
    assert metrics == pytest.approx(_recount(task, cfg), abs=1e-6)


def test_unknown_task_option_names_key(world, tmp_path):
    with pytest.raises(ValueError, match="label_smothing"):
        TASKS.build("classification", cfg=make_cfg(world, tmp_path, label_smothing=0.1))


def test_cache_needs_frozen_adapter(world, tmp_path):
    with pytest.raises(ValueError, match="leaves the image features unchanged"):
        TASKS.build("classification", cfg=make_cfg(world, tmp_path, cache_features=True))
