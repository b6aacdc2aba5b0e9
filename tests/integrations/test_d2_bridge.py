"""Detectron2 bridge: the shipped configs build, train a step and infer with only adapter + neck + head
parameters receiving gradients; the trainer saves trainable-only checkpoints, resumes, and evaluates with
COCOEvaluator. Skipped where detectron2 is not installed (it is not on PyPI; see docs/integrations.md)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from umgkit.integrations import is_detectron2_available

if not is_detectron2_available():
    pytest.skip("detectron2 is not installed (build it from source, see docs/integrations.md)",
                allow_module_level=True)

from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import BitMasks, Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from umgkit.engine.checkpoint import checkpoint_problem  # noqa: E402
from umgkit.integrations.d2 import UMGKitBackbone, load_trainable_weights, setup_cfg  # noqa: E402
from umgkit.integrations.d2.checkpoint import resume_training, save_training_checkpoint  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "detectron2"
TINY = ["MODEL.DEVICE", "cpu", "MODEL.UMGKIT.BACKBONE", "umg:tiny", "MODEL.UMGKIT.SQUARE_PAD", "0",
        "MODEL.UMGKIT.OUT_CHANNELS", "32", "MODEL.UMGKIT.ADAPTER_OPTIONS.rank", "2",
        "MODEL.ANCHOR_GENERATOR.SIZES", "[[8], [16], [32], [64], [128]]",
        "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "32", "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "100",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50", "MODEL.RPN.PRE_NMS_TOPK_TEST", "100",
        "MODEL.RPN.POST_NMS_TOPK_TEST", "50", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
        "MODEL.ROI_BOX_HEAD.CONV_DIM", "16", "MODEL.ROI_BOX_HEAD.FC_DIM", "32",
        "MODEL.ROI_MASK_HEAD.CONV_DIM", "16",
        "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
        "INPUT.MAX_SIZE_TEST", "64", "DATALOADER.NUM_WORKERS", "0", "SEED", "0"]
PANOPTIC = ["MODEL.ROI_HEADS.NUM_CLASSES", "3", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "4",
            "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32"]


def _model(config: str, extra=()):
    torch.manual_seed(0)
    cfg = setup_cfg(str(CONFIGS / config), TINY + list(extra))
    return cfg, build_model(cfg)


def _inputs(num_classes: int, sem_classes: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for h, w in ((64, 96), (80, 64)):
        inst = Instances((h, w))
        boxes = torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 10.0, 60.0, 50.0]])
        masks = torch.zeros(2, h, w, dtype=torch.bool)
        for i, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
            masks[i, y0:y1, x0:x1] = True
        inst.gt_boxes, inst.gt_classes = Boxes(boxes), torch.tensor([0, num_classes - 1])
        inst.gt_masks = BitMasks(masks)
        item = {"image": torch.randint(0, 256, (3, h, w), generator=g).float(), "instances": inst,
                "height": h, "width": w}
        if sem_classes:
            item["sem_seg"] = torch.randint(0, sem_classes, (h, w), generator=g)
        out.append(item)
    return out


def _check_gradients(model) -> None:
    """Frozen trunk: no grad; adapter, pyramid and heads: trainable and reached by the loss."""
    bridge = model.backbone
    assert isinstance(bridge, UMGKitBackbone)
    prefix = "backbone.umgkit.backbone."
    adapter, trunk = [], []
    for name, p in model.named_parameters():
        if name.startswith(prefix):
            (adapter if bridge.adapter.owns(name[len(prefix):]) else trunk).append((name, p))
        else:  # pyramid (backbone.umgkit.neck) and every detectron2 head
            assert p.requires_grad and p.grad is not None, name
    assert trunk and all(not p.requires_grad and p.grad is None for _, p in trunk)
    assert adapter and all(p.requires_grad and p.grad is not None for _, p in adapter)
    assert any(p.grad.abs().sum() > 0 for _, p in adapter)


@pytest.mark.parametrize("config, extra, sem", [
    ("mask_rcnn_vitdet_umg.yaml", ["MODEL.ROI_HEADS.NUM_CLASSES", "3"], 0),
    ("panoptic_fpn_umg.yaml", PANOPTIC, 4),
])
def test_shipped_config_trains_a_step_and_infers(config, extra, sem):
    cfg, model = _model(config, extra)
    shapes = model.backbone.output_shape()
    assert {k: (s.channels, s.stride) for k, s in shapes.items()} == {
        "p2": (32, 4), "p3": (32, 8), "p4": (32, 16), "p5": (32, 32), "p6": (32, 64)}
    assert model.backbone.size_divisibility == 64

    model.train()
    with EventStorage():  # detectron2's heads log training statistics into it
        losses = model(_inputs(3, sem))
    assert "loss_mask" in losses and all(torch.isfinite(v) for v in losses.values())
    if sem:
        assert "loss_sem_seg" in losses
    sum(losses.values()).backward()
    _check_gradients(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {n for n, p in model.named_parameters() if p.requires_grad}

    model.eval()
    with torch.no_grad():
        out = model([{k: v for k, v in d.items() if k in ("image", "height", "width")} for d in _inputs(3)])
    assert len(out) == 2 and out[1]["instances"].image_size == (80, 64)
    assert out[1]["instances"].has("pred_masks") or len(out[1]["instances"]) == 0
    if sem:
        assert out[0]["sem_seg"].shape == (4, 64, 96) and "panoptic_seg" in out[0]


def _trainer_state(model) -> SimpleNamespace:
    """What the checkpoint hook reads of a DefaultTrainer: model, optimizer, LR scheduler, iteration."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    return SimpleNamespace(model=model, optimizer=opt, iter=4, _trainer=SimpleNamespace(),
                           scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1.0 / (1 + it)))


def test_checkpoint_holds_trainable_parameters_and_optimizer_state(tmp_path):
    _, model = _model("mask_rcnn_vitdet_umg.yaml", ["MODEL.ROI_HEADS.NUM_CLASSES", "3"])
    trainer = _trainer_state(model)
    model.train()
    with EventStorage():
        sum(model(_inputs(3)).values()).backward()
    trainer.optimizer.step()
    trainer.scheduler.step()
    out = save_training_checkpoint(trainer, tmp_path / "checkpoints")
    assert out == tmp_path / "checkpoints" / "step_0000005" and checkpoint_problem(out) is None
    saved = load_file(out / "trainable.safetensors")
    assert set(saved) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert {"optimizer.safetensors", "optimizer.json", "scheduler.json", "umgkit_model.json"} <= \
        {p.name for p in out.iterdir()}

    _, fresh = _model("mask_rcnn_vitdet_umg.yaml", ["MODEL.ROI_HEADS.NUM_CLASSES", "3"])
    assert load_trainable_weights(fresh, out) == 5
    for name, p in fresh.named_parameters():
        if p.requires_grad:
            assert torch.equal(p, model.get_parameter(name)), name
    again = _trainer_state(fresh)
    assert resume_training(again, out) == 5
    assert again.scheduler.last_epoch == trainer.scheduler.last_epoch == 1
    theirs, mine = trainer.optimizer.state_dict()["state"], again.optimizer.state_dict()["state"]
    assert theirs.keys() == mine.keys() and len(mine) == len(saved)
    assert all(torch.equal(theirs[i]["exp_avg_sq"], mine[i]["exp_avg_sq"]) for i in theirs)
    _, other = _model("mask_rcnn_vitdet_umg.yaml", ["MODEL.ROI_HEADS.NUM_CLASSES", "5"])
    with pytest.raises(ValueError, match="has shape"):
        load_trainable_weights(other, out)


@pytest.mark.slow
def test_trainer_runs_saves_trainable_only_resumes_and_evaluates(tmp_path):
    from umgkit.data.synth import generate_world
    from umgkit.integrations.d2.train import main

    generate_world(tmp_path / "world", num=10, size=64, seed=0, val_fraction=0.2)
    opts = TINY + ["UMGKIT.COCO_ROOT", str(tmp_path / "world" / "coco"), "DATASETS.TRAIN", "('train',)",
                   "DATASETS.TEST", "('val',)", "MODEL.ROI_HEADS.NUM_CLASSES", "8",
                   "SOLVER.IMS_PER_BATCH", "2",
                   "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "1",
                   "OUTPUT_DIR", str(tmp_path / "run")]
    config = str(CONFIGS / "mask_rcnn_vitdet_umg.yaml")
    results = main(config, opts)
    assert set(results) >= {"bbox", "segm"} and "AP" in results["bbox"]
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_0000001", "step_0000002"]
    # detectron2's full-model pickles (model_*.pth + last_checkpoint) are never written
    assert not list((tmp_path / "run").rglob("model_*.pth"))
    assert not (tmp_path / "run" / "last_checkpoint").exists()
    _, model = _model("mask_rcnn_vitdet_umg.yaml", ["MODEL.ROI_HEADS.NUM_CLASSES", "8"])
    saved = load_file(ckpts / "step_0000002" / "trainable.safetensors")
    assert set(saved) == {n for n, p in model.named_parameters() if p.requires_grad}
    moments = load_file(ckpts / "step_0000002" / "optimizer.safetensors")  # AdamW's, for --resume
    assert len([k for k in moments if k.endswith(".exp_avg")]) == len(saved)
    assert json.loads((ckpts / "step_0000002" / "trainer_state.json").read_text())["step"] == 2

    with pytest.raises(ValueError, match="NUM_CLASSES"):
        main(config, opts + ["MODEL.ROI_HEADS.NUM_CLASSES", "3"])
    main(config, opts[:-2] + ["SOLVER.MAX_ITER", "3", "TEST.EVAL_PERIOD", "0", "UMGKIT.KEEP_LAST", "2",
                              "OUTPUT_DIR", str(tmp_path / "run")], resume=True)
    assert (ckpts / "step_0000003" / "complete").is_file()
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_0000002", "step_0000003"]  # keep_last
    # AdamW went on from the saved moments: its step count is 3 (a restarted optimizer would say 1)
    steps = {v.item() for k, v in load_file(ckpts / "step_0000003" / "optimizer.safetensors").items()
             if k.endswith(".step")}
    assert steps == {3.0}
