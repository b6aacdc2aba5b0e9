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


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["timm:eva02_tiny_patch14_224", "timm:convnext_atto", "hf:siglip",
                                      "openclip:umgkit-tiny-eva02"])
def test_merged_export_evaluates_like_the_run(world, tmp_path, siglip, backbone):
    """`umgkit export --merge` writes the backbone in its library's format; the exported folder evaluates
    to the run's own figures (LoRA merged into the weights)."""
    from umgkit.tasks.run import evaluate_saved

    name = f"hf:{siglip}" if backbone == "hf:siglip" else backbone
    out, exported = tmp_path / "run", tmp_path / "exported"
    assert main(["train", str(DEMO / "semantic.yaml"), f"output_dir={out}", "data.synthetic.out=",
                 f"data.root={world / 'ade'}", f"model.backbone={name}", "model.adapter=lora",
                 "model.adapter_options.rank=2", "train.max_steps=2", "train.progress=false",
                 "data.batch_size=2", "train.lr=0.05"]) == 0
    assert main(["export", str(out), "--out", str(exported), "--merge"]) == 0
    info = json.loads((exported / "model.json").read_text())
    assert info["adapter"] is None or info["adapter"]["method"] == "frozen"
    _, run_metrics = evaluate_saved(out)
    _, merged_metrics = evaluate_saved(exported)
    assert run_metrics.keys() == merged_metrics.keys()
    for key, value in run_metrics.items():  # a class absent from the 2 val images has IoU nan in both
        assert merged_metrics[key] == pytest.approx(value, abs=1e-5, nan_ok=True), key
    assert run_metrics["mIoU"] == run_metrics["mIoU"]  # a number, not nan
