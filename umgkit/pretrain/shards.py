"""WebDataset-style tar shards of manifest records: write them, stream them, or index them map-style.

Layout: plain (uncompressed) POSIX tars ``<prefix>-000000.tar, ...``; each sample is two consecutive
members sharing a key, ``<key>.json`` (the manifest record, its ``image`` field kept for reference) and
``<key>.<ext>`` (the image file's bytes, ext as in the source). Uncompressed tars stream sequentially and
allow random access by member offset, which `ShardDataset` uses.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .._io import atomic_write
from ..data._base import ReaderDataset
from ..data._images import BadSampleError, DatasetError
from ..registry import DATASETS
from .data import item_from_record, parse_line

__all__ = ["write_shards", "iter_shard", "decode_image", "ShardDataset", "list_shards"]

_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def decode_image(data: bytes, where: str) -> torch.Tensor:
    """Image bytes -> float ``(3, H, W)`` in [0, 1], as `umgkit.data.load_image` reads files."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as err:  # Pillow raises many types for corrupt data
        raise BadSampleError(f"Corrupt or truncated image in {where} ({err}); rewrite the shard or set "
                             "data.skip_bad=true.") from err
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def write_shards(manifest: str | Path, out_dir: str | Path, *, samples_per_shard: int = 1000,
                 prefix: str | None = None) -> list[Path]:
    """Pack a JSONL manifest (images relative to it) into tar shards; returns the shard paths.

    ``prefix`` defaults to the manifest's stem (``train.jsonl`` -> ``train-000000.tar``), the names
    ``manifest_shards`` looks for. Each shard is written atomically.
    """
    manifest, out = Path(manifest), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = prefix or manifest.stem
    lines = [ln for ln in manifest.read_text(encoding="utf-8").splitlines() if ln.strip()]
    paths = []
    for s, start in enumerate(range(0, len(lines), samples_per_shard)):
        path = out / f"{prefix}-{s:06d}.tar"

        def write(tmp: str, chunk=lines[start:start + samples_per_shard], first=start) -> None:
            with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
                for i, line in enumerate(chunk):
                    rec = parse_line(line, f"{manifest}:{first + i + 1}")
                    image = manifest.parent / rec["image"]
                    key = f"{first + i:09d}"
                    for name, data in ((f"{key}.json", json.dumps(rec, sort_keys=True).encode()),
                                       (f"{key}{image.suffix.lower()}", image.read_bytes())):
                        info = tarfile.TarInfo(name)
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))

        atomic_write(path, write)
        paths.append(path)
    return paths


def _pairs(members: Iterator[tuple[tarfile.TarInfo, bytes | None]], shard: Path):
    """Group consecutive ``<key>.json`` + ``<key>.<image ext>`` members; yields (key, json, image)."""
    pending: dict[str, dict] = {}
    for info, data in members:
        if not info.isfile():
            continue
        key, _, ext = info.name.rpartition(".")
        slot = pending.setdefault(key, {})
        slot["json" if ext == "json" else "image" if f".{ext.lower()}" in _IMAGE_EXTS else "other"] = \
            (info, data)
        if "json" in slot and "image" in slot:
            yield key, slot["json"], slot["image"]
            del pending[key]
    for key, slot in pending.items():
        missing = "image" if "json" in slot else "json"
        yield key, slot.get("json"), slot.get("image"), f"{shard}: sample {key} has no {missing} member"


def iter_shard(shard: str | Path) -> Iterator[tuple[dict | BadSampleError, bytes | None, str]]:
    """Stream ``(record, image bytes, where)`` from one shard (a bad sample yields the error instead)."""
    shard = Path(shard)
    with tarfile.open(shard, "r|") as tar:
        members = ((info, tar.extractfile(info).read() if info.isfile() else None) for info in tar)
        for key, *rest in _pairs(members, shard):
            where = f"{shard}:{key}"
            if len(rest) == 3:
                yield BadSampleError(rest[2] + "; rewrite the shard or set data.skip_bad=true."), None, where
                continue
            (_, meta), (_, image) = rest
            try:
                yield parse_line(meta.decode("utf-8"), where), image, where
            except BadSampleError as err:
                yield err, None, where


def list_shards(root: str | Path, split: str) -> list[Path]:
    """``root`` itself (a .tar), else ``root/<split>-*.tar`` or ``root/<split>/*.tar``, sorted."""
    root = Path(root)
    if root.suffix == ".tar":
        return [root]
    found = sorted(root.glob(f"{split}-*.tar")) or sorted((root / split).glob("*.tar"))
    if not found:
        raise DatasetError(f"No tar shards for split '{split}' in {root} (looked for {split}-*.tar and "
                           f"{split}/*.tar). Write them with umgkit.pretrain.write_shards(manifest, {root}).")
    return found


class ShardDataset(ReaderDataset):
    """Map-style reader over tar shards: one pass over the headers at construction records each
    sample's member offsets; ``__getitem__`` seeks straight to them."""

    def __init__(self, root, split, transform=None, skip_bad=False, num_classes=None, limit=None):
        super().__init__(root, split, transform, skip_bad, limit)
        if num_classes is not None:
            raise DatasetError("manifest_shards has no class list; drop data.num_classes.")
        self.shards = list_shards(self.root, split)
        samples = []
        for s, shard in enumerate(self.shards):
            with tarfile.open(shard, "r:") as tar:
                members = ((info, None) for info in tar.getmembers())
                for key, *rest in _pairs(members, shard):
                    if len(rest) == 3:
                        samples.append(rest[2])  # a bad sample, reported on load
                        continue
                    (meta, _), (image, _) = rest
                    samples.append((s, key, meta.offset_data, meta.size, image.offset_data, image.size))
        self.samples = samples
        self._finish(None, f"shards {self.root}")

    def load(self, sample: tuple | str) -> dict:
        if isinstance(sample, str):
            raise BadSampleError(sample + "; rewrite the shard or set data.skip_bad=true.")
        s, key, meta_at, meta_size, image_at, image_size = sample
        where = f"{self.shards[s]}:{key}"
        with self.shards[s].open("rb") as fh:
            fh.seek(meta_at)
            meta = fh.read(meta_size)
            fh.seek(image_at)
            image = fh.read(image_size)
        rec = parse_line(meta.decode("utf-8"), where)
        return item_from_record(rec, decode_image(image, where), where)


@DATASETS.register("manifest_shards")
def build_manifest_shards(root, split, transform=None, skip_bad=False, num_classes=None, limit=None,
                          **options) -> ShardDataset:
    """WebDataset-style tar shards of manifest records (``<split>-*.tar``), map-style by member offset."""
    if options:
        raise DatasetError(f"manifest_shards: unknown data.options {sorted(options)}; it takes none.")
    return ShardDataset(root, split, transform, skip_bad, num_classes, limit)
