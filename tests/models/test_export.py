"""`umgkit export --merge`: the merged backbone loads in its own library (no umgkit import) and gives the
adapted model's image features; the exported folder predicts as the run does; unmergeable methods refuse."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from umgkit.backbones import create_backbone
from umgkit.backbones.openclip import UMGKIT_OPENCLIP_CONFIGS
from umgkit.cli import main
from umgkit.config import config_from_dict
from umgkit.errors import ModelError
from umgkit.models import Predictor, build_model, export_model, load_model, save_model_folder

# each library's own input size (open_clip and timm check it; umgkit interpolates position embeddings)
BACKBONES = {"umg:tiny": 64, "openclip:umgkit-tiny-openclip": 32, "timm:vit_tiny_patch16_224": 224}
METHODS = {"lora": {"rank": 4, "alpha": 8}, "lora_qv": {"rank": 4, "alpha": 8}, "ssf": {}, "bitfit": {}}
CASES = [(b, m) for b in BACKBONES for m in METHODS]

# runs in a fresh interpreter that never imports umgkit: the library alone reads the exported file
_LIBRARY_FEATURES = """
import sys
import torch
from safetensors.torch import load_file, save_file
kind, name, weights, data, out, configs = sys.argv[1:]
x = load_file(data)["x"]
assert "umgkit" not in sys.modules
with torch.no_grad():
    if kind == "openclip":
        import open_clip
        open_clip.add_model_config(configs)
        model = open_clip.create_model(name, pretrained=weights).eval()
        feats = model.encode_image(x, normalize=True)
    else:
        import timm
        model = timm.create_model(name, pretrained=True, num_classes=0,
                                  pretrained_cfg_overlay=dict(file=weights)).eval()
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        feats = torch.nn.functional.normalize(pooled, dim=-1)
assert "umgkit" not in sys.modules
save_file({"feats": feats.contiguous()}, out)
"""


def _adapted_model(backbone: str, method: str, size: int, folder: Path):
    cfg = config_from_dict({"task": "classification", "output_dir": str(folder), "data": {"image_size": size},
                            "model": {"backbone": backbone, "adapter": method, "head": "linear",
                                      "adapter_options": METHODS[method]}})
    model = build_model(cfg, ["a", "b", "c"]).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # stand-in for training: every adapter weight moves away from its identity init
        for name, param in model.backbone.named_parameters():
            if model.adapter.owns(name):
                param.add_(0.05 * torch.randn(param.shape, generator=g))
    save_model_folder(model, folder / "model")
    return model


@pytest.mark.parametrize(("backbone", "method"), CASES, ids=[f"{b}-{m}" for b, m in CASES])
def test_merged_backbone_loads_in_its_own_library_with_the_adapted_features(tmp_path, backbone, method):
    size = BACKBONES[backbone]
    model = _adapted_model(backbone, method, size, tmp_path / "run")
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        adapted = model.backbone.encode_image(x)
        plain = build_model(model.config, ["a", "b", "c"]).backbone.encode_image(x)
    assert (adapted - plain).abs().max() > 1e-3  # the adapter changes the features: the check can fail
    out = export_model(tmp_path / "run", tmp_path / "exported", merge=True)
    info = json.loads((out / "model.json").read_text())
    assert info["adapter"]["method"] == "frozen" and info["complete"]
    family = backbone.split(":", 1)[0]
    if family == "umg":
        merged = create_backbone(info["backbone"]["name"]).eval()
        with torch.no_grad():
            feats = merged.encode_image(x)
    else:
        save_file({"x": x.contiguous()}, str(tmp_path / "x.safetensors"))
        proc = subprocess.run([sys.executable, "-c", _LIBRARY_FEATURES, family, backbone.split(":", 1)[1],
                               info["backbone"]["file"], str(tmp_path / "x.safetensors"),
                               str(tmp_path / "feats.safetensors"), str(UMGKIT_OPENCLIP_CONFIGS)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        feats = load_file(str(tmp_path / "feats.safetensors"))["feats"]
    torch.testing.assert_close(feats, adapted, atol=1e-5, rtol=0)
    # the exported folder is a model folder: same logits through the Predictor's model
    exported = load_model(out)
    with torch.no_grad():
        torch.testing.assert_close(exported(images=x), model(images=x), atol=1e-5, rtol=0)


def test_exported_folder_predicts_as_the_run(tmp_path, semantic_run, small_world):
    images = small_world / "ade" / "images" / "validation"
    assert main(["export", str(semantic_run), "--out", str(tmp_path / "exported"), "--merge"]) == 0
    assert "umg:backbone" in (tmp_path / "exported" / "config.yaml").read_text()  # inside the folder
    (tmp_path / "exported").rename(tmp_path / "merged")  # the folder carries its weights: it can move
    assert main(["predict", str(tmp_path / "merged"), str(images), "--out", str(tmp_path / "a")]) == 0
    assert main(["predict", str(semantic_run), str(images), "--out", str(tmp_path / "b")]) == 0
    for png in sorted((tmp_path / "b" / "labels").glob("*.png")):
        ours, theirs = (np.asarray(__import__("PIL.Image").Image.open(p)) for p in
                        (tmp_path / "a" / "labels" / png.name, png))
        assert np.array_equal(ours, theirs), png.name
    assert Predictor.from_pretrained(tmp_path / "merged").model.adapter.method == "frozen"


def test_export_without_merge_keeps_the_adapter_and_merge_of_adaptformer_is_refused(tmp_path, capsys):
    model = _adapted_model("umg:tiny", "lora", 64, tmp_path / "run")
    kept = export_model(tmp_path / "run", tmp_path / "copy")
    assert json.loads((kept / "model.json").read_text())["adapter"]["method"] == "lora"
    assert (kept / "adapter" / "adapter_model.safetensors").is_file()
    cfg = config_from_dict({"task": "classification", "output_dir": str(tmp_path / "af"),
                            "data": {"image_size": 64},
                            "model": {"backbone": "umg:tiny", "adapter": "adaptformer", "head": "linear"}})
    save_model_folder(build_model(cfg, ["a", "b"]), tmp_path / "af" / "model")
    with pytest.raises(ModelError, match="cannot be merged"):
        export_model(tmp_path / "af", tmp_path / "af_merged", merge=True)
    assert main(["export", str(tmp_path / "af"), "--out", str(tmp_path / "x"), "--merge"]) == 2
    assert "without --merge" in capsys.readouterr().err
    del model
