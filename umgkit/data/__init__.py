"""Dataset readers for standard formats, joint transforms and batching.

Importing this package registers the readers in `umgkit.registry.DATASETS`: imagefolder, csv,
coop_split, coco_captions, karpathy, coco_instances, coco_panoptic, ade20k, seg_folder, manifest,
manifest_lazy and webdataset (streamed shards; `umgkit.data.shards`). Every map-style builder
takes ``(root, split, transform=None, skip_bad=False, num_classes=None, limit=None, **options)`` and
returns a Dataset of dict items (images float (3, H, W) in [0, 1]; boxes absolute XYXY pixels;
label 255 = ignore) with ``class_names``.
"""

from ._base import ReaderDataset
from .build import build_dataset
from .captions import CaptionDataset, build_coco_captions, build_karpathy
from .classification import CsvDataset, ImageFolderDataset, build_csv, build_imagefolder
from .collate import collate_dicts
from .coop_split import CoopSplitDataset, build_coop_split, read_split_file
from .fewshot import FewShotDataset, fewshot_splits, sample_shots, split_classes
from .images import IGNORE_INDEX, BadSampleError, DatasetError, load_image, load_label_map
from .instances import CocoInstancesDataset, build_coco_instances, decode_segmentation
from .manifest import ManifestDataset, build_manifest
from .manifest_lazy import LazyManifest, build_manifest_lazy
from .panoptic import CocoPanopticDataset, build_coco_panoptic, id_to_rgb, rgb_to_id
from .semantic import SegFolderDataset, build_ade20k, build_seg_folder, reduce_zero_label_map
from .shards import ShardStream, build_webdataset, write_shards
from .synth import generate_world
from .transforms import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, JointTransform, build_transforms

__all__ = [
    "IGNORE_INDEX", "BadSampleError", "DatasetError", "ReaderDataset", "load_image", "load_label_map",
    "ImageFolderDataset", "CsvDataset", "CoopSplitDataset", "CaptionDataset",
    "CocoInstancesDataset", "CocoPanopticDataset",
    "SegFolderDataset", "ManifestDataset", "LazyManifest", "ShardStream", "write_shards",
    "build_imagefolder", "build_csv", "build_coop_split", "build_coco_captions", "build_karpathy",
    "build_coco_instances",
    "build_coco_panoptic", "build_ade20k", "build_seg_folder", "build_manifest",
    "build_manifest_lazy", "build_webdataset",
    "decode_segmentation", "rgb_to_id", "id_to_rgb", "reduce_zero_label_map",
    "JointTransform", "build_transforms", "CLIP_MEAN", "CLIP_STD", "IMAGENET_MEAN", "IMAGENET_STD",
    "build_dataset", "collate_dicts", "generate_world",
    "FewShotDataset", "fewshot_splits", "sample_shots", "split_classes", "read_split_file",
]
