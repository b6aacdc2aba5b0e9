"""Multi-granularity pretraining of umgkit's dual encoder (image, region and pixel alignment with text).

Importing this package registers the ``pretrain`` task and the ``manifest_lazy`` / ``manifest_shards``
readers. `run_pretrain` (``umgkit pretrain CONFIG``) trains on the engine, writes a ``umg:`` checkpoint
and prints the zero-shot figures; `run_ablation` (``--ablation``) compares image-only with
multi-granularity losses.
"""

from .data import LazyManifest, StreamingManifest, item_from_record
from .model import PretrainModel
from .run import BACKBONE_DIR, evaluate_zeroshot, run_ablation, run_pretrain, zeroshot_specs
from .shards import ShardDataset, iter_shard, write_shards
from .task import OPTIONS, PretrainTask, build_pretrain_task
from .zeroshot import (
    chance_miou,
    class_embeddings,
    format_zeroshot,
    zeroshot_classification,
    zeroshot_regions,
    zeroshot_segmentation,
)

__all__ = [
    "BACKBONE_DIR",
    "LazyManifest",
    "OPTIONS",
    "PretrainModel",
    "PretrainTask",
    "ShardDataset",
    "StreamingManifest",
    "build_pretrain_task",
    "chance_miou",
    "class_embeddings",
    "evaluate_zeroshot",
    "format_zeroshot",
    "item_from_record",
    "iter_shard",
    "run_ablation",
    "run_pretrain",
    "write_shards",
    "zeroshot_classification",
    "zeroshot_regions",
    "zeroshot_segmentation",
    "zeroshot_specs",
]
