"""MMSegmentation bridge: the backbone registers in mmseg's MODELS, returns the 4-level list decode heads
index, lets only adapter + pyramid (+ head) parameters learn, and exports the adapter alone. Building the
full UperNet segmentor needs ``mmseg.models`` (mmcv with compiled ops); that test skips where it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from umgkit.integrations import is_mmseg_available, is_mmseg_models_available

if not is_mmseg_available():
    pytest.skip("mmsegmentation / mmengine are not installed (see docs/integrations.md)",
                allow_module_level=True)

from mmengine.config import Config  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402

from umgkit.adapters import load_adapter  # noqa: E402
from umgkit.backbones import create_backbone  # noqa: E402
from umgkit.integrations.mmseg import (  # noqa: E402
    UMGKitBackbone,
    export_adapter,
    export_adapter_from_checkpoint,
)

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "mmseg" / "upernet_umg_ade20k_512.py"
TINY = dict(backbone="umg:tiny", adapter_options=dict(rank=2), out_channels=16)


def _config() -> Config:
    return Config.fromfile(str(CONFIG))  # also imports umgkit.integrations.mmseg via custom_imports


MODELS_OK, MODELS_WHY = is_mmseg_models_available()


def _backbone() -> UMGKitBackbone:
    """The shipped config's backbone, tiny. ``MODELS.build`` imports ``mmseg.models`` (mmengine's lazy
    registry import), which needs compiled mmcv ops; without them the registered class is called directly."""
    torch.manual_seed(0)
    kwargs = {**_config().model.backbone, **TINY}
    if MODELS_OK:
        return MODELS.build(kwargs)
    assert kwargs.pop("type") == "UMGKitBackbone"
    return UMGKitBackbone(**kwargs)


def test_backbone_is_registered_in_mmseg_models():
    assert MODELS.module_dict["UMGKitBackbone"] is UMGKitBackbone  # no lazy import of mmseg.models


def test_shipped_config_wires_the_backbone_into_upernet():
    cfg = _config()
    bb, head = cfg.model.backbone, cfg.model.decode_head
    assert bb.type == "UMGKitBackbone" and "depth" not in bb  # the ResNet keys were deleted
    assert head.type == "UPerHead" and head.num_classes == 150
    assert head.in_channels == [bb.out_channels] * 4
    assert cfg.model.auxiliary_head.in_channels == bb.out_channels
    assert list(bb.pixel_mean) == list(cfg.model.data_preprocessor.mean)
    assert tuple(cfg.crop_size) == (512, 512)


def test_backbone_returns_four_levels_and_only_adapter_and_pyramid_learn():
    model = _backbone()
    model.init_weights()  # a no-op: must not re-initialise the frozen trunk
    model.train()
    feats = model(torch.randn(2, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(2, 16, 64 // s, 96 // s) for s in (4, 8, 16, 32)]
    sum(f.square().mean() for f in feats).backward()
    for name, p in model.named_parameters():
        inner = name[len("umgkit.backbone."):]
        trainable = name.startswith("umgkit.neck.") or (name.startswith("umgkit.backbone.")
                                                        and model.adapter.owns(inner))
        assert p.requires_grad == trainable and (p.grad is not None) == trainable, name


def test_adapter_export_alone_and_from_a_checkpoint(tmp_path):
    model = _backbone()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1)
    export_adapter(model, tmp_path / "a")
    plain = create_backbone("umg:tiny")
    loaded = load_adapter(plain, tmp_path / "a")
    mine = model.adapter.adapter_state_dict(model.umgkit.backbone)
    assert all(torch.equal(mine[k], v) for k, v in loaded.adapter_state_dict(plain).items())

    state = {f"backbone.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "it.pth")
    seg = torch.nn.Module()
    seg.backbone = _backbone()  # fresh weights, as when rebuilding from the run's config
    export_adapter_from_checkpoint(seg, tmp_path / "it.pth", tmp_path / "b")
    again = load_adapter(create_backbone("umg:tiny"), tmp_path / "b")
    assert again.options == loaded.options


@pytest.mark.slow
def test_upernet_from_the_shipped_config_trains_a_step_and_infers():
    if not MODELS_OK:
        pytest.skip(MODELS_WHY)
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    cfg = _config()
    cfg.model.backbone.update(TINY)
    for head in (cfg.model.decode_head, cfg.model.auxiliary_head):
        head.norm_cfg = dict(type="BN", requires_grad=True)
        head.num_classes = 5
    cfg.model.decode_head.in_channels, cfg.model.decode_head.channels = [16] * 4, 16
    cfg.model.auxiliary_head.in_channels, cfg.model.auxiliary_head.channels = 16, 16
    cfg.model.test_cfg = dict(mode="whole")
    model = MODELS.build(cfg.model)
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, 64, 64)))
        samples.append(s)
    model.train()
    losses = model.loss(torch.randn(2, 3, 64, 64), samples)
    sum(v for k, v in losses.items() if "loss" in k).backward()
    for name, p in model.named_parameters():
        if name.startswith("backbone.umgkit.backbone.") and not model.backbone.adapter.owns(
                name[len("backbone.umgkit.backbone."):]):
            assert p.grad is None, name
        else:
            assert p.grad is not None, name
    model.eval()
    with torch.no_grad():
        out = model.predict(torch.randn(2, 3, 64, 64), samples)
    assert out[0].pred_sem_seg.data.shape == (1, 64, 64)
