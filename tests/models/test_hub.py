"""`hf-hub:` model names and `umgkit push`, with no network: a Hugging Face cache written by
huggingface_hub's own cache helpers, HF_HUB_OFFLINE=1, and the upload call replaced by a recorder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from huggingface_hub.file_download import (
    _cache_commit_hash_for_specific_revision,
    _create_symlink,
    _get_pointer_path,
    repo_folder_name,
)

from umgkit.cli import main
from umgkit.errors import ModelError
from umgkit.models import Predictor

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache_snapshot(cache: Path, repo_id: str, folder: Path, revision: str = "main") -> None:
    """Put ``folder`` into a hub cache as huggingface_hub stores a download: blobs, snapshot links, refs."""
    storage = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        pointer = _get_pointer_path(str(storage), COMMIT, file.relative_to(folder).as_posix())
        Path(pointer).parent.mkdir(parents=True, exist_ok=True)  # as hf_hub_download does before linking
        _create_symlink(str(blob), pointer, new_blob=False)
    _cache_commit_hash_for_specific_revision(str(storage), revision, COMMIT)


@pytest.fixture()
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub_cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read once at import; the libraries consult it
    return cache


def test_a_cached_hub_model_predicts_like_the_run_offline(semantic_run, small_world, tmp_path, offline_cache):
    exported = tmp_path / "exported"
    assert main(["export", str(semantic_run), "--out", str(exported), "--merge"]) == 0
    _cache_snapshot(offline_cache, "umgkit-test/semantic", exported)
    shutil.rmtree(exported)  # only the cache is left
    images = [str(p) for p in sorted((small_world / "ade" / "images" / "validation").glob("*.png"))]
    hub = Predictor.from_pretrained("hf-hub:umgkit-test/semantic")(images)
    pinned = Predictor.from_pretrained("hf-hub:umgkit-test/semantic@main")(images[:1])
    run = Predictor.from_pretrained(semantic_run)(images)
    assert all(np.array_equal(a.label_map, b.label_map) for a, b in zip(hub, run, strict=True))
    assert np.array_equal(pinned[0].label_map, run[0].label_map)
    # the CLI in a fresh process, environment only
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(offline_cache))
    proc = subprocess.run([sys.executable, "-m", "umgkit.cli", "eval", "hf-hub:umgkit-test/semantic",
                           f"data.root={small_world / 'ade'}"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0 and "mIoU:" in proc.stdout, proc.stderr[-2000:]


def test_an_unknown_hub_name_offline_is_one_clear_error(offline_cache, tmp_path):
    with pytest.raises(ModelError, match="offline"):
        Predictor.from_pretrained("hf-hub:umgkit-test/missing")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(offline_cache))
    proc = subprocess.run([sys.executable, "-m", "umgkit.cli", "predict", "hf-hub:umgkit-test/missing",
                           str(tmp_path), "--out", str(tmp_path / "p")], capture_output=True, text=True,
                          env=env, timeout=120)
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(errors) == 1 and "umgkit-test/missing" in errors[0] and "HF_HUB_OFFLINE" in errors[0]
    with pytest.raises(ModelError, match="not a hub model name"):
        Predictor.from_pretrained("hf-hub:no-slash")


def test_push_uploads_the_model_folder_with_its_card(semantic_run, tmp_path, monkeypatch, capsys):
    from huggingface_hub import HfApi

    calls = {}

    def create_repo(self, **kwargs):
        calls["create"] = kwargs

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        calls["upload"] = kwargs
        calls["files"] = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        calls["card"] = (folder / "README.md").read_text()
        return "https://hub.example/commit/1"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # push refuses offline, and without a token
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_never_sent")
    assert main(["push", str(semantic_run), "umgkit-test/semantic", "--private"]) == 0
    assert calls["create"] == {"repo_id": "umgkit-test/semantic", "repo_type": "model", "private": True,
                               "exist_ok": True}
    assert calls["upload"]["repo_id"] == "umgkit-test/semantic"
    assert {"README.md", "config.yaml", "class_names.json", "preprocess.json", "model.json",
            "head.safetensors", "adapter/adapter_model.safetensors",
            "adapter/adapter_config.json"} == set(calls["files"])
    assert calls["card"].startswith("---\nlibrary_name: umgkit")
    assert "hf-hub:umgkit-test/semantic" in capsys.readouterr().out


def test_push_refuses_a_folder_whose_backbone_file_stays_behind(small_world, tmp_path):
    import torch

    from umgkit.backbones import create_backbone
    from umgkit.backbones.umg import save_umg_checkpoint

    torch.manual_seed(0)
    backbone = save_umg_checkpoint(create_backbone("umg:tiny"), tmp_path / "backbone")
    run = tmp_path / "run"
    config = Path(__file__).resolve().parents[2] / "configs" / "demo" / "semantic.yaml"
    assert main(["train", str(config), f"output_dir={run}", "data.synthetic.out=",
                 f"data.root={small_world / 'ade'}", f"model.backbone=umg:{backbone}", "train.max_steps=1",
                 "train.progress=false", "data.batch_size=4", "data.val_split="]) == 0
    with pytest.raises(ModelError, match="outside itself"):
        from umgkit.models.hub import push_model

        push_model(run, "umgkit-test/x")
    info = json.loads((run / "model" / "model.json").read_text())
    assert info["backbone"]["file"].endswith("model.safetensors")


def test_timm_and_open_clip_hub_backbones_load_from_a_cache_offline(offline_cache, tmp_path):
    """`timm:hf-hub:` / `openclip:hf-hub:` read repositories each library wrote itself (save_for_hf)."""
    import open_clip
    import timm
    import torch
    from open_clip.push_to_hf_hub import save_for_hf as save_open_clip_for_hf
    from timm.models import save_for_hf as save_timm_for_hf

    from umgkit.backbones import create_backbone
    from umgkit.backbones.openclip import _ensure_umgkit_configs
    from umgkit.errors import WeightsError

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0).eval()
    save_timm_for_hf(vit, str(tmp_path / "timm_repo"))
    _cache_snapshot(offline_cache, "umgkit-test/vit-tiny", tmp_path / "timm_repo")
    _ensure_umgkit_configs()
    clip = open_clip.create_model("umgkit-tiny-openclip").eval()
    # open_clip's built-in CLIP tokenizer has no files to save (save_for_hf expects an HF tokenizer's
    # save_pretrained); the repository's config names it, and open_clip rebuilds it from that
    no_files = SimpleNamespace(save_pretrained=lambda directory: None)
    save_open_clip_for_hf(clip, no_files, open_clip.get_model_config("umgkit-tiny-openclip"),
                          str(tmp_path / "clip_repo"))
    _cache_snapshot(offline_cache, "umgkit-test/tiny-openclip", tmp_path / "clip_repo")

    x224, x32 = torch.rand(2, 3, 224, 224), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        timm_bb = create_backbone("timm:hf-hub:umgkit-test/vit-tiny")
        pooled = vit.forward_head(vit.forward_features(x224), pre_logits=True)
        expected = torch.nn.functional.normalize(pooled, dim=-1)
        torch.testing.assert_close(timm_bb.encode_image(x224), expected, atol=1e-5, rtol=0)
        clip_bb = create_backbone("openclip:hf-hub:umgkit-test/tiny-openclip")
        torch.testing.assert_close(clip_bb.encode_image(x32), clip.encode_image(x32, normalize=True),
                                   atol=1e-5, rtol=0)
    with pytest.raises(WeightsError, match="offline"):
        create_backbone("timm:hf-hub:umgkit-test/not-cached")
