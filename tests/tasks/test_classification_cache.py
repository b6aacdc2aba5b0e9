"""Frozen-feature cache: computed once, reused across epochs and runs, invalidated by a changed input."""

import json

import pytest
import torch

from umgkit._builtins import import_builtins
from umgkit.backbones.base import Backbone
from umgkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from umgkit.data.synth import generate_world
from umgkit.engine import Trainer
from umgkit.registry import TASKS


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("cworld")
    generate_world(out, num=40, size=32, seed=0, progress=False)
    return out / "imagefolder"


@pytest.fixture
def calls(monkeypatch):
    """Count every image forward through any backbone."""
    count = {"n": 0}
    original = Backbone.encode_image

    def counting(self, images):
        count["n"] += 1
        return original(self, images)

    monkeypatch.setattr(Backbone, "encode_image", counting)
    return count


def make_cfg(root, out, cache_dir, image_size=32):
    import_builtins()
    return RunConfig(task="classification", output_dir=str(out), seed=0,
                     model=ModelConfig(backbone="umg:tiny", adapter="frozen", head="linear"),
                     data=DataConfig(root=str(root), image_size=image_size, batch_size=4, eval_batch_size=8),
                     train=TrainConfig(epochs=3, lr=1e-2, progress=False),
                     task_options={"cache_dir": str(cache_dir)})


def test_backbone_runs_once_then_never(world, tmp_path, calls):
    cache = tmp_path / "cache"
    cfg = make_cfg(world, tmp_path / "a", cache)
    task = TASKS.build("classification", cfg=cfg)
    first = calls["n"]
    assert first > 0  # train + val features computed at build time
    entries = sorted(p for p in cache.iterdir() if not p.name.startswith("."))
    assert len(entries) == 2  # train split and val split
    meta = json.loads((entries[0] / "meta.json").read_text())
    assert meta["num"] in (len(task.train_dataset), len(task.val_dataset))
    assert meta["key"]["backbone"] == "umg:tiny"
    metrics = Trainer(task, cfg).fit()  # 3 epochs + evaluation on cached features
    assert calls["n"] == first
    # top-1 counted here: the trained head's argmax on the cached val features (batched as evaluated)
    val = task.val_dataset
    with torch.no_grad():
        batches = val.features.split(cfg.data.eval_batch_size)
        logits = torch.cat([task.model.eval()(features=f) for f in batches])
    hits = int((logits.argmax(1) == val.labels).sum())
    assert metrics["top1"] == pytest.approx(hits / len(val), abs=1e-6)

    # a second run with the same inputs reads the cache: no backbone call at all
    TASKS.build("classification", cfg=make_cfg(world, tmp_path / "b", cache))
    assert calls["n"] == first


def test_changed_transform_invalidates(world, tmp_path, calls):
    cache = tmp_path / "cache"
    TASKS.build("classification", cfg=make_cfg(world, tmp_path / "a", cache, image_size=32))
    after_first = calls["n"]
    TASKS.build("classification", cfg=make_cfg(world, tmp_path / "b", cache, image_size=48))
    assert calls["n"] > after_first  # recomputed for the new image size
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 4
