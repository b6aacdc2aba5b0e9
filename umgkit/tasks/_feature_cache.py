"""Frozen-feature cache: run a frozen backbone over a split once, then train heads on the stored features.

With ``adapter: frozen`` the backbone output of an image never changes, so a linear probe can compute
``encode_image`` once (no grad, the deterministic *eval* transform, so no augmentation) and reuse it for
every epoch and every later run with the same inputs.

Key: a SHA-256 fingerprint of a JSON record of everything that decides the features:
- the backbone string and its pretrained file (path + size + mtime; the string alone for hub tags),
- ``repr(transform)`` (image size, crop, mean / std),
- the dataset: class, root, split, ``limit``, and every sample's path and file size (plus its label).
Any change gives a new fingerprint, so a stale entry is never read; it is rebuilt under the new key.

Layout: ``<cache_dir>/<fingerprint[:20]>/`` holding ``meta.json`` (the full key record, sample count,
feature dim, shard names) and ``shard_00000.safetensors`` ... (``features (n, F) float32``,
``labels (n,) int64``, at most ``SHARD_SIZE`` rows each). An entry is written into a temp folder and
renamed into place, so a crash never leaves a half entry that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.collate import collate_dicts

__all__ = ["FeatureDataset", "cache_fingerprint", "cached_features", "compute_features", "SHARD_SIZE"]

SHARD_SIZE = 8192  # rows per safetensors shard (8192 x 768 float32 = 24 MB)


class FeatureDataset(Dataset):
    """Items ``{"features": (F,) float32, "label": int}``; keeps the source's ``class_names``."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, class_names: list[str],
                 cache_path: Path | None = None) -> None:
        self.features, self.labels = features, labels  # (N, F), (N,)
        self.class_names = list(class_names)
        self.cache_path = cache_path

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"features": self.features[index], "label": int(self.labels[index])}


def _file_id(path: str | None) -> Any:
    if not path:
        return None
    p = Path(path).expanduser()
    if p.is_file():
        st = p.stat()
        return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return {"tag": str(path)}  # hub tag or name: the string is all we know


def _dataset_id(dataset: Dataset) -> dict[str, Any]:
    files = []
    for record in getattr(dataset, "samples", []):
        path = record[0] if isinstance(record, (tuple, list)) else record
        label = record[1] if isinstance(record, (tuple, list)) and len(record) > 1 else None
        try:
            size = os.stat(path).st_size
        except (OSError, TypeError):
            size = None
        files.append([str(path), size, label])
    if not files:
        raise ValueError(f"feature cache: {dataset!r} exposes no `samples` list to fingerprint; set "
                         "task_options.cache_features=false for this reader.")
    return {"class": type(dataset).__name__, "root": str(getattr(dataset, "root", "")),
            "split": getattr(dataset, "split", None), "limit": getattr(dataset, "limit", None),
            "class_names": list(getattr(dataset, "class_names", [])), "files": files}


def cache_fingerprint(*, backbone: str, pretrained: str | None, transform: Any,
                      dataset: Dataset) -> tuple[str, dict]:
    """``(hex digest, key record)`` for the inputs listed in the module docstring."""
    record = {"version": 1, "backbone": backbone, "pretrained": _file_id(pretrained),
              "transform": repr(transform), "dataset": _dataset_id(dataset)}
    blob = json.dumps(record, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest(), record


def _load(entry: Path, digest: str, class_names: list[str]) -> FeatureDataset | None:
    from safetensors.torch import load_file

    try:
        meta = json.loads((entry / "meta.json").read_text())
        if meta.get("fingerprint") != digest:
            return None
        shards = [load_file(str(entry / name)) for name in meta["shards"]]
    except (OSError, ValueError, KeyError):
        return None  # missing or damaged: rebuild
    feats = torch.cat([s["features"] for s in shards]) if shards else torch.zeros(0, meta["dim"])
    labels = torch.cat([s["labels"] for s in shards]) if shards else torch.zeros(0, dtype=torch.long)
    if feats.shape[0] != meta["num"]:
        return None
    return FeatureDataset(feats, labels, class_names, cache_path=entry)


@torch.no_grad()
def compute_features(backbone: nn.Module, dataset: Dataset, batch_size: int, device: torch.device
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (N, F) float32, labels (N,) int64)`` of ``dataset`` in order, in eval mode, no grad."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_dicts)
    was_training = backbone.training
    backbone.eval()
    feats, labels = [], []
    for batch in loader:
        if not batch.get("batch_size"):
            continue
        feats.append(backbone.encode_image(batch["image"].to(device)).float().cpu())  # (B, F)
        labels.append(batch["label"].long().cpu())
    backbone.train(was_training)
    if not feats:
        raise ValueError(f"feature cache: no readable samples in {dataset!r}.")
    return torch.cat(feats), torch.cat(labels)


def cached_features(backbone: nn.Module, dataset: Dataset, *, backbone_name: str, pretrained: str | None,
                    cache_dir: str | Path, batch_size: int = 64, device: torch.device | str = "cpu"
                    ) -> FeatureDataset:
    """``dataset``'s features from the cache under ``cache_dir``, computing and storing them on a miss.

    ``dataset`` must carry the deterministic eval transform (its ``transform`` is part of the key).
    Skipped bad samples (``data.skip_bad``) are simply absent from the stored features.
    """
    from safetensors.torch import save_file

    digest, record = cache_fingerprint(backbone=backbone_name, pretrained=pretrained,
                                       transform=getattr(dataset, "transform", None), dataset=dataset)
    class_names = list(getattr(dataset, "class_names", []))
    entry = Path(cache_dir).expanduser() / digest[:20]
    hit = _load(entry, digest, class_names) if entry.is_dir() else None
    if hit is not None:
        return hit
    feats, labels = compute_features(backbone, dataset, batch_size, torch.device(device))
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        shards = []
        for i, start in enumerate(range(0, feats.shape[0], SHARD_SIZE)):
            name = f"shard_{i:05d}.safetensors"
            save_file({"features": feats[start:start + SHARD_SIZE].contiguous(),
                       "labels": labels[start:start + SHARD_SIZE].contiguous()}, str(tmp / name))
            shards.append(name)
        meta = {"fingerprint": digest, "num": int(feats.shape[0]), "dim": int(feats.shape[1]),
                "shards": shards, "key": record}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        if entry.exists():  # damaged or stale-format entry under the same key
            shutil.rmtree(entry, ignore_errors=True)
        try:
            os.replace(tmp, entry)
        except OSError:  # another process renamed its (identical) entry first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FeatureDataset(feats, labels, class_names, cache_path=entry)
