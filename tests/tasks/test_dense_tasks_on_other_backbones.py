"""The dense heads (semantic FPN, Mask2Former panoptic, ViTDet detection) train on backbones other than umg's
own ViT: timm's EVA02 (rotary position embeddings, patch 14) and a transformers SigLIP (no class token)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from umgkit.backbones.hf_tiny import save_tiny_hf
from umgkit.cli import main

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo"
ROOTS = {"semantic": "ade", "panoptic": "coco", "detection": "coco"}


@pytest.fixture(scope="module")
def siglip(tmp_path_factory):
    return save_tiny_hf(tmp_path_factory.mktemp("hf") / "siglip", "siglip", image_size=64)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["semantic", "panoptic", "detection"])
@pytest.mark.parametrize("backbone", ["eva02", "siglip"])
def test_dense_head_trains_two_steps(world, tmp_path, siglip, task, backbone):
    name = {"eva02": "timm:eva02_tiny_patch14_224", "siglip": f"hf:{siglip}"}[backbone]
    out = tmp_path / "run"
    overrides = [f"output_dir={out}", "data.synthetic.out=", f"data.root={world / ROOTS[task]}",
                 f"model.backbone={name}", "model.adapter=lora", "model.adapter_options.rank=2",
                 "train.max_steps=2", "train.log_every=1", "train.progress=false", "data.batch_size=2"]
    if backbone == "eva02":
        overrides.append("model.head_options.classifier=learned")  # vision only: no text classifier
    assert main(["train", str(DEMO / f"{task}.yaml"), *overrides]) == 0
    info = json.loads((out / "model" / "model.json").read_text())
    assert info["complete"] and info["backbone"]["name"] == name
    assert info["adapter"]["method"] == "lora" and info["trainable_parameters"] > 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/loss" in r] == [1, 2]
    assert any(k.startswith("val/") for r in rows for k in r)
