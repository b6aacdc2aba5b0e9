"""``umgkit mmseg-train`` in an mmseg environment (tools/mmseg_env.sh): mmseg's Runner trains the synthetic
world's UperNet config, evaluates with IoUMetric, writes trainable-only checkpoints, resumes from them and
exports an adapter `load_adapter` reads; and mmseg's IoUMetric arithmetic equals umgkit's mIoU. Skips
with the reason where mmseg (with compiled mmcv ops) is absent, as in CI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from umgkit.integrations import is_mmseg_models_available

OK, WHY = is_mmseg_models_available()
if not OK:
    pytest.skip(f"mmseg with compiled mmcv ops is not usable here: {WHY}", allow_module_level=True)

from umgkit.adapters import load_adapter  # noqa: E402
from umgkit.backbones import create_backbone  # noqa: E402
from umgkit.cli import main  # noqa: E402
from umgkit.data.synth import generate_world  # noqa: E402
from umgkit.metrics import ConfusionMatrix  # noqa: E402

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "mmseg" / "upernet_umg_synthetic.py"


def test_iou_metric_and_umgkit_miou_agree_on_the_same_predictions():
    from mmseg.evaluation.metrics import IoUMetric

    gen = torch.Generator().manual_seed(0)
    num_classes, results = 7, []
    ours = ConfusionMatrix(num_classes)
    for _ in range(5):
        label = torch.randint(0, num_classes, (40, 56), generator=gen)
        label[torch.rand(40, 56, generator=gen) < 0.1] = 255  # ignored pixels
        pred = torch.where(torch.rand(40, 56, generator=gen) < 0.6, label.clamp(max=num_classes - 1),
                           torch.randint(0, num_classes, (40, 56), generator=gen))
        pred[pred == 3] = 4  # class 3 is never predicted: IoU 0 where present
        results.append(IoUMetric.intersect_and_union(pred, label, num_classes, 255))
        ours.update(pred, label)
    totals = [torch.stack([r[i] for r in results]).sum(0) for i in range(4)]
    theirs = IoUMetric.total_area_to_metrics(*totals, metrics=["mIoU"])
    want = float(np.nanmean(theirs["IoU"]))
    got = ours.compute(per_class=False)
    assert abs(got["mIoU"] - want) < 1e-6 and abs(got["aAcc"] - float(theirs["aAcc"])) < 1e-6


def test_mmseg_train_trains_evaluates_checkpoints_resumes_and_exports(tmp_path):
    generate_world(tmp_path / "world", num=60, size=64, progress=False)
    root = tmp_path / "world" / "ade"
    data = [f"{loader}.dataset.data_root={root}" for loader in ("train_dataloader", "val_dataloader",
                                                                "test_dataloader")]
    work = tmp_path / "run"
    args = ["mmseg-train", str(CONFIG), "--work-dir", str(work), "--cfg-options", *data]
    assert main(args) == 0
    ckpts = work / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_0000020", "step_0000040"]
    last = ckpts / "step_0000040"
    names = sorted(p.name for p in last.iterdir())
    assert names == ["adapter", "complete", "optimizer.json", "optimizer.safetensors", "scheduler.json",
                     "trainable.safetensors", "trainer_state.json"]
    assert not list(work.rglob("*.pth"))  # no pickled mmengine checkpoint anywhere
    # the optimizer holds the trainable parameters only: as many as trainable.safetensors has tensors
    from safetensors.torch import load_file

    trainable = load_file(str(last / "trainable.safetensors"))
    groups = json.loads((last / "optimizer.json").read_text())["param_groups"]
    assert sum(len(g["params"]) for g in groups) == len(trainable)
    assert not any("umgkit.backbone.blocks.0.attn.qkv.weight" == n for n in trainable)  # frozen weight
    logs = "\n".join(p.read_text() for p in work.rglob("*.log"))
    assert "mIoU" in logs  # mmseg's IoUMetric ran

    shutil.rmtree(ckpts / "step_0000040")
    assert main([*args[:4], "--resume", "--cfg-options", *data]) == 0
    logs = "\n".join(p.read_text() for p in work.rglob("*.log"))
    assert "resumed from" in logs and "step_0000020 (iteration 20)" in logs
    assert (ckpts / "step_0000040" / "complete").is_file()

    backbone = create_backbone("umg:tiny")
    handle = load_adapter(backbone, work / "adapter")
    assert handle.method == "lora_qv"
    exported = load_file(str(work / "adapter" / "adapter_model.safetensors"))
    in_checkpoint = load_file(str(ckpts / "step_0000040" / "adapter" / "adapter_model.safetensors"))
    assert exported.keys() == in_checkpoint.keys() and exported
    assert all(torch.equal(exported[k], in_checkpoint[k]) for k in exported)  # the final state
