"""Manifest records for pretraining: one record -> item function, a streaming reader and a lazy map reader.

Items are those of the map-style ``manifest`` reader (`umgkit.data.ManifestDataset`): ``image``,
``caption``, ``tags``, ``boxes`` (R, 4) XYXY, ``region_captions``, ``region_tags``, ``masks`` (R, H, W)
uint8 (a box-filled mask where the record has none), ``has_mask`` (R,) and ``path``.

- `StreamingManifest` (an ``IterableDataset``) reads JSONL files and/or tar shards (`umgkit.pretrain.shards`)
  line by line, never holding the manifest in memory; records are split over DataLoader workers and
  processes, optionally shuffled through a seeded buffer (``set_epoch`` changes the order).
- `LazyManifest` (registered reader ``manifest_lazy``) is map-style for the engine's shuffling sampler but
  keeps only the byte offset of each line (8 bytes per record), so it scales to manifests that do not fit
  in memory as parsed JSON.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..data._base import ReaderDataset
from ..data._images import BadSampleError, DatasetError, load_image
from ..data.manifest import item_from_record, manifest_file
from ..registry import DATASETS

__all__ = ["item_from_record", "parse_line", "StreamingManifest", "LazyManifest", "stream_position"]


def parse_line(line: str, where: str) -> dict:
    """One manifest line -> record; raises `BadSampleError` naming ``where`` (file:line)."""
    try:
        rec = json.loads(line)
    except ValueError as err:
        raise BadSampleError(f"Bad manifest line {where}: {err}. Fix the line or set data.skip_bad=true.") \
            from err
    if not isinstance(rec, dict) or "image" not in rec:
        raise BadSampleError(f"Bad manifest line {where}: expected a JSON object with an 'image' key; fix "
                             "the line or set data.skip_bad=true.")
    return rec


def stream_position(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(index, count)`` of this reader among all processes x DataLoader workers."""
    if rank is None or world_size is None:
        dist = torch.distributed
        ready = dist.is_available() and dist.is_initialized()
        rank, world_size = (dist.get_rank(), dist.get_world_size()) if ready else (0, 1)
    info = get_worker_info()
    wid, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank * workers + wid, world_size * workers


class StreamingManifest(IterableDataset):
    """Iterate items from ``sources`` (``.jsonl`` files and/or ``.tar`` shards, in the given order).

    Splitting: with at least as many files as readers (processes x workers), reader ``i`` takes files
    ``i, i + n, ...``; otherwise every reader scans all files and takes records ``i, i + n, ...``.
    Either way each record is read by exactly one reader. ``shuffle_buffer > 0`` shuffles through a
    buffer of that many items seeded by ``(seed, epoch, reader)``.
    """

    def __init__(self, sources: str | Path | Sequence[str | Path], *, transform: Callable | None = None,
                 skip_bad: bool = False, shuffle_buffer: int = 0, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None) -> None:
        paths = [Path(sources)] if isinstance(sources, (str, Path)) else [Path(s) for s in sources]
        for p in paths:
            if p.suffix not in (".jsonl", ".tar") or not p.is_file():
                raise DatasetError(f"StreamingManifest: {p} is not an existing .jsonl manifest or .tar "
                                   "shard.")
        self.sources, self.transform, self.skip_bad = paths, transform, bool(skip_bad)
        self.shuffle_buffer, self.seed, self.epoch = int(shuffle_buffer), int(seed), 0
        self.rank, self.world_size = rank, world_size
        self.num_skipped = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _raw(self, me: int, count: int) -> Iterator[tuple[dict | BadSampleError, Any, str]]:
        """``(record or error, image source, where)``: a path for JSONL, bytes for tar shards."""
        from .shards import iter_shard

        by_file = len(self.sources) >= count
        n = 0
        for f, path in enumerate(self.sources):
            if by_file and f % count != me:
                continue
            if path.suffix == ".tar":
                stream = ((rec, img, where) for rec, img, where in iter_shard(path))
            else:
                stream = self._jsonl(path)
            for rec, src, where in stream:
                n += 1
                if by_file or (n - 1) % count == me:
                    yield rec, src, where

    @staticmethod
    def _jsonl(path: Path) -> Iterator[tuple[dict | BadSampleError, Path, str]]:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    rec = parse_line(line, where)
                except BadSampleError as err:
                    yield err, None, where
                    continue
                yield rec, path.parent / rec["image"], where

    def _load(self, rec: dict | BadSampleError, src: Any, where: str) -> dict | None:
        from .shards import decode_image

        try:
            if isinstance(rec, BadSampleError):
                raise rec
            image = load_image(src) if isinstance(src, Path) else decode_image(src, where)
            item = item_from_record(rec, image, str(src) if isinstance(src, Path) else where)
        except BadSampleError:
            if not self.skip_bad:
                raise
            self.num_skipped += 1
            return None
        return self.transform(item) if self.transform is not None else item

    def __iter__(self) -> Iterator[dict | None]:
        me, count = stream_position(self.rank, self.world_size)
        items = (self._load(*raw) for raw in self._raw(me, count))
        if self.shuffle_buffer <= 0:
            yield from items
            return
        rng = random.Random(f"{self.seed}-{self.epoch}-{me}")
        buffer: list = []
        for item in items:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(item)
                continue
            j = rng.randrange(len(buffer))
            yield buffer[j]
            buffer[j] = item
        rng.shuffle(buffer)
        yield from buffer


class LazyManifest(ReaderDataset):
    """Map-style JSONL reader holding byte offsets only; ``root`` is the .jsonl or a folder with
    ``<split>.jsonl``. ``class_names`` is empty (scanning the tags would read the whole file)."""

    def __init__(self, root, split, transform=None, skip_bad=False, num_classes=None, limit=None):
        super().__init__(root, split, transform, skip_bad, limit)
        path = manifest_file(self.root, split)
        if num_classes is not None:
            raise DatasetError("manifest_lazy has no class list; drop data.num_classes.")
        self.manifest = path
        offsets, pos = [], 0
        with path.open("rb") as fh:
            for line in fh:
                if line.strip():
                    offsets.append(pos)
                pos += len(line)
        self.samples = np.asarray(offsets, dtype=np.int64)
        self._finish(None, f"manifest {path}")

    def load(self, offset: np.int64) -> dict:
        with self.manifest.open("rb") as fh:
            fh.seek(int(offset))
            line = fh.readline().decode("utf-8")
        rec = parse_line(line, f"{self.manifest}@byte{int(offset)}")
        path = self.manifest.parent / rec["image"]
        return item_from_record(rec, load_image(path), str(path))


@DATASETS.register("manifest_lazy")
def build_manifest_lazy(root, split, transform=None, skip_bad=False, num_classes=None, limit=None,
                        **options) -> LazyManifest:
    """JSONL manifest, map-style over line offsets (large manifests; same items as ``manifest``)."""
    if options:
        raise DatasetError(f"manifest_lazy: unknown data.options {sorted(options)}; it takes none.")
    return LazyManifest(root, split, transform, skip_bad, num_classes, limit)
