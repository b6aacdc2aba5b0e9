# UperNet on ADE20K-150 at 512x512 with a frozen umgkit backbone + adapter (mmseg 1.x / mmengine config).
# Train:  python tools/train.py configs/mmseg/upernet_umg_ade20k_512.py   (mmseg source tree), or
#         mmengine.runner.Runner.from_cfg(mmengine.Config.fromfile(THIS_FILE)).train()
# Data:   train_dataloader.dataset.data_root (inherited: data/ade/ADEChallengeData2016) holds images/ and
#         annotations/ with training/ + validation/; the synthetic world's ade/ folder has that layout.
# After training: umgkit.integrations.mmseg.export_adapter_from_checkpoint(...) writes the adapter alone.
_base_ = [
    "mmseg::_base_/models/upernet_r50.py",
    "mmseg::_base_/datasets/ade20k.py",
    "mmseg::_base_/default_runtime.py",
    "mmseg::_base_/schedules/schedule_160k.py",
]
custom_imports = dict(imports=["umgkit.integrations.mmseg"], allow_failed_imports=False)

crop_size = (512, 512)
# CLIP statistics x 255 (RGB): what umg / openclip backbones were trained with, so the bridge's input
# re-normalisation is a no-op; keep pixel_mean / pixel_std below equal to these.
clip_mean = [122.7709383, 116.7460125, 104.09373615]
clip_std = [68.5005327, 66.6321579, 70.32316305]
norm_cfg = dict(type="SyncBN", requires_grad=True)  # the decode heads' norm (use "BN" on one GPU / CPU)
data_preprocessor = dict(type="SegDataPreProcessor", mean=clip_mean, std=clip_std, bgr_to_rgb=True,
                         pad_val=0, seg_pad_val=255, size=crop_size)
channels = 256  # every pyramid level (p2..p5, strides 4..32)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type="UMGKitBackbone",
        backbone="umg:base16",  # any umgkit registry string; pretrained= a local weights file
        pretrained=None,
        adapter="lora_qv",
        adapter_options=dict(rank=8),
        out_channels=channels,
        out_indices=(0, 1, 2, 3),
        pixel_mean=clip_mean,
        pixel_std=clip_std,
    ),
    decode_head=dict(in_channels=[channels] * 4, in_index=[0, 1, 2, 3], channels=512, num_classes=150,
                     norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=channels, in_index=2, channels=256, num_classes=150, norm_cfg=norm_cfg),
    test_cfg=dict(mode="slide", crop_size=crop_size, stride=(341, 341)),
)

# AdamW over the trainable parameters (adapter + pyramid + heads; the frozen ViT has no gradients)
optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={"norm": dict(decay_mult=0.0), "pos_embed": dict(decay_mult=0.0)}),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type="PolyLR", eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
train_dataloader = dict(batch_size=2)  # x 8 GPUs = 16, the standard ADE20K 160k protocol
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
