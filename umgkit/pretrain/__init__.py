"""Multi-granularity pretraining of umgkit's dual encoder (image, region and pixel alignment with text).

Importing this package registers the ``pretrain`` task; its readers live in `umgkit.data` (``manifest``,
``manifest_lazy``, and ``webdataset`` shards for web-scale data). `run_pretrain` (``umgkit pretrain
CONFIG``) trains on the engine, writes a ``umg:`` checkpoint and prints the zero-shot figures;
`run_ablation` (``--ablation``) compares image-only with multi-granularity losses.
"""

from .model import PretrainModel
from .run import BACKBONE_DIR, evaluate_zeroshot, run_ablation, run_pretrain, zeroshot_specs
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
    "OPTIONS",
    "PretrainModel",
    "PretrainTask",
    "build_pretrain_task",
    "chance_miou",
    "class_embeddings",
    "evaluate_zeroshot",
    "format_zeroshot",
    "run_ablation",
    "run_pretrain",
    "zeroshot_classification",
    "zeroshot_regions",
    "zeroshot_segmentation",
    "zeroshot_specs",
]
