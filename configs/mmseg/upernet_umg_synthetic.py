# The UperNet + umgkit config on the synthetic world's ADE20K-format split: 13 classes, 64 px, 40
# iterations on CPU, no download. Write the world first, then train (evaluates with mmseg's IoUMetric):
#   umgkit data synth --out data/synthetic_world --num 200 --size 64
#   umgkit mmseg-train configs/mmseg/upernet_umg_synthetic.py --work-dir work_dirs/synthetic [--resume]
# Elsewhere: --cfg-options data_root=... is not enough (the value is already substituted); override
# train_dataloader.dataset.data_root=... val_dataloader.dataset.data_root=... test_dataloader.dataset.data_root=...
_base_ = ["./upernet_umg_ade20k_512.py"]

data_root = "data/synthetic_world/ade"
classes = ("circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon", "sky", "grass",
           "water", "sand", "brick")
num_classes = len(classes)
crop_size = (64, 64)
norm_cfg = dict(type="BN", requires_grad=True)  # one process on CPU: no SyncBN

train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", reduce_zero_label=True),  # label 0 = other/void -> 255, k -> k - 1
    dict(type="RandomResize", scale=(96, 64), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.9),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(96, 64), keep_ratio=True),
    dict(type="LoadAnnotations", reduce_zero_label=True),
    dict(type="PackSegInputs"),
]
dataset = dict(type="BaseSegDataset", data_root=data_root, metainfo=dict(classes=classes),
               img_suffix=".png", seg_map_suffix=".png", reduce_zero_label=True)
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(_delete_=True, **dataset, pipeline=train_pipeline,
                 data_prefix=dict(img_path="images/training", seg_map_path="annotations/training")))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(_delete_=True, **dataset, pipeline=test_pipeline,
                 data_prefix=dict(img_path="images/validation", seg_map_path="annotations/validation")))
test_dataloader = val_dataloader
val_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])
test_evaluator = val_evaluator

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(backbone="umg:tiny", adapter_options=dict(rank=4), out_channels=32),
    decode_head=dict(in_channels=[32] * 4, channels=32, num_classes=num_classes, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=32, channels=16, num_classes=num_classes, norm_cfg=norm_cfg),
    test_cfg=dict(_delete_=True, mode="whole"),
)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=5),
    dict(type="PolyLR", eta_min=0.0, power=1.0, begin=5, end=40, by_epoch=False),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=40, val_interval=20)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(by_epoch=False, interval=20))
