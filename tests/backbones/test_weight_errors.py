"""Which failures become a one-line `WeightsError` and which stay what they are.

Only reading a weights file and fetching from the hub are user errors; a bug while building a model is
not hidden behind one. A hub error says "offline" only when the hub is switched off and the file is not
cached, a local folder's problem is reported as the folder's, and every `WeightsError` keeps its cause.
"""

from __future__ import annotations

import json
import shutil

import open_clip
import pytest
import torch
from backbone_cases import build, hf_folder
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors.torch import save_file

from umgkit.backbones import create_backbone
from umgkit.errors import UnknownNameError, WeightsError

TINY = "openclip:umgkit-tiny-openclip"


def _broken_create_model(*args, **kwargs):
    raise RuntimeError("a bug while building the towers")


@pytest.fixture
def weights_file(tmp_path):
    model = build("openclip")
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.model.state_dict().items()}, str(path))
    return path


def test_a_construction_bug_beside_a_local_weights_file_is_not_a_weights_error(weights_file, monkeypatch):
    assert create_backbone(TINY, pretrained=str(weights_file)) is not None  # the file itself is fine
    monkeypatch.setattr(open_clip, "create_model", _broken_create_model)
    with pytest.raises(RuntimeError, match="a bug while building the towers") as info:
        create_backbone(TINY, pretrained=str(weights_file))
    assert not isinstance(info.value, WeightsError)


def test_a_damaged_local_weights_file_is_a_weights_error_that_keeps_its_cause(weights_file):
    weights_file.write_bytes(weights_file.read_bytes()[:100])  # truncated
    readable = r"weights\.safetensors is not a readable safetensors file"
    with pytest.raises(WeightsError, match=readable) as info:
        create_backbone(TINY, pretrained=str(weights_file))
    assert info.value.__cause__ is not None  # the reader's own error, shown by --debug


def test_a_file_for_another_architecture_names_the_file(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"visual.proj": torch.zeros(2, 2)}, str(path))
    with pytest.raises(WeightsError, match=r"other\.safetensors could not be loaded as weights"):
        create_backbone(TINY, pretrained=str(path))


def test_hf_hub_names_offline_only_when_offline_is_the_reason(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(open_clip, "create_model", _broken_create_model)
    with pytest.raises(RuntimeError, match="a bug while building the towers") as info:
        create_backbone("openclip:hf-hub:umgkit-test/any")
    assert not isinstance(info.value, WeightsError)

    def not_cached(*args, **kwargs):
        raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache")

    monkeypatch.setattr(open_clip, "create_model", not_cached)
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE is set") as info:
        create_backbone("openclip:hf-hub:umgkit-test/any")
    assert isinstance(info.value.__cause__, LocalEntryNotFoundError)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(WeightsError, match="the hub could not be reached") as info:  # no network, not offline
        create_backbone("openclip:hf-hub:umgkit-test/any")
    assert "offline" not in str(info.value)


def test_pretrained_tags_unknown_broken_and_unreachable(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    unknown = r"pretrained tag for ViT-B-16 'laion2b_s34b_b8'.*laion2b_s34b_b88k"
    with pytest.raises(UnknownNameError, match=unknown):
        create_backbone("openclip:ViT-B-16", pretrained="laion2b_s34b_b8")
    monkeypatch.setattr(open_clip, "create_model", _broken_create_model)
    with pytest.raises(RuntimeError, match="a bug while building the towers"):
        create_backbone("openclip:ViT-B-16", pretrained="laion2b_s34b_b88k")

    def unreachable(*args, **kwargs):
        try:
            raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub")
        except LocalEntryNotFoundError as err:  # open_clip wraps a failed download in a RuntimeError
            raise RuntimeError(f"Failed to download weights for tag 'laion2b_s34b_b88k': {err}") from None

    monkeypatch.setattr(open_clip, "create_model", unreachable)
    fix = r"'laion2b_s34b_b88k' is a hub name, but the hub could not be reached .*/path/to/open_clip_model"
    with pytest.raises(WeightsError, match=fix):
        create_backbone("openclip:ViT-B-16", pretrained="laion2b_s34b_b88k")


def test_a_local_hf_folder_with_a_broken_tokenizer_is_that_folders_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline must not be blamed for a local folder
    folder = tmp_path / "broken_tokenizer"
    shutil.copytree(hf_folder("clip"), folder)
    (folder / "tokenizer.json").write_text("{not json")
    bb = create_backbone(f"hf:{folder}")
    with pytest.raises(WeightsError, match=rf"tokenizer files in folder {folder} cannot be read") as info:
        bb.encode_text(["a red circle"])
    assert "offline" not in str(info.value) and "cache" not in str(info.value)
    assert info.value.__cause__ is not None


def test_a_broken_local_open_clip_tokenizer_does_not_blame_the_hub(tmp_path):
    from test_checkpoints import _siglip_config

    from umgkit.backbones.hf_tiny import save_tiny_hf

    tokenizer_dir = save_tiny_hf(tmp_path / "tok", "siglip")
    (tokenizer_dir / "tokenizer.json").write_text("{not json")
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "umgkit-test-siglip-broken.json").write_text(json.dumps(_siglip_config(str(tokenizer_dir))))
    open_clip.add_model_config(configs)
    bb = create_backbone("openclip:umgkit-test-siglip-broken")
    with pytest.raises(WeightsError, match="text tokenizer could not be loaded") as info:
        bb.encode_text(["a red circle"])
    assert "hub" not in str(info.value) and info.value.__cause__ is not None


def test_timm_hub_errors_are_sorted_the_same_way(monkeypatch):
    import timm

    with pytest.raises(UnknownNameError, match=r"timm pretrained tag for vit_tiny_patch16_224 'augreg_in21'"):
        create_backbone("timm:vit_tiny_patch16_224", pretrained="augreg_in21")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(timm, "create_model", _broken_create_model)
    with pytest.raises(RuntimeError, match="a bug while building the towers") as info:
        create_backbone("timm:hf-hub:umgkit-test/any")
    assert not isinstance(info.value, WeightsError)
