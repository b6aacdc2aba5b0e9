"""Web-scale pretraining data as webdataset tar shards: written from a manifest, streamed to the trainer.

A sample is ``<key>.json`` (the manifest record: caption(s), tags, regions with boxes, captions, tags and
RLE masks; ``image`` keeps the source path for reference) plus ``<key>.<ext>`` (the image file's bytes,
unchanged). `write_shards` packs a JSONL manifest in parallel with webdataset's `TarWriter` and writes
``<split>.shards.json`` beside the shards: their names and sample counts, which lets every process plan
an epoch without opening a tar.

`ShardStream` is the reader (registered as data format ``webdataset``). Each epoch the shard list is
shuffled by ``(seed, epoch)``, split over processes and then DataLoader workers (every reader gets its own
shards, so one epoch reads each sample once), read sequentially by webdataset (local paths, ``pipe:``
commands, http URLs; brace patterns such as ``train-{000000..000099}.tar`` expand), shuffled through a
buffer seeded by ``(seed, epoch, reader)``, decoded to uint8 and only then cropped and
converted by the transform. ``resampled`` instead draws shards with replacement for as long as the
trainer asks (an epoch is then ``epoch_samples`` samples).

The trainer tells the stream, before each epoch, how many batches every process takes and how many it
already took (`ShardStream.plan`): each worker then stops after its share, which keeps the processes'
batch counts equal (no collective waits for a process that ran dry), and a resumed run skips the records
it consumed before decoding anything.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .._io import check_output_folder
from .._rng import item_seed, key_index, seeded
from ..registry import DATASETS
from .images import BadSampleError, DatasetError
from .manifest import item_from_record, manifest_file, parse_record

__all__ = ["ShardStream", "StreamPlan", "write_shards", "read_index", "decode_uint8", "INDEX_SUFFIX"]

INDEX_SUFFIX = ".shards.json"
_FIX_LINE = "Fix or remove that line, then run `umgkit data shards` again."
_IMAGE_EXTS = ("png", "jpg", "jpeg", "webp", "bmp")


def decode_uint8(data: bytes, where: str) -> torch.Tensor:
    """Image bytes -> uint8 ``(3, H, W)`` RGB; grey, palette and RGBA become RGB.

    Pillow decodes (torchvision.io's decoders are deprecated as of torchvision 0.29); nothing is turned
    into floats here, so a crop that follows touches a quarter of the bytes a float image would have.
    """
    import io

    import numpy as np
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except Exception as err:  # Pillow raises many types for corrupt data
        raise BadSampleError(f"Corrupt or truncated image in {where} ({err}); rewrite the shard or set "
                             "data.skip_bad=true.") from err
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


# ---------------------------------------------------------------------------------------------- writing
def write_shards(manifest: str | Path, out_dir: str | Path, *, samples_per_shard: int = 1000,
                 split: str | None = None, workers: int = 1, progress: bool = False) -> Path:
    """Pack the JSONL ``manifest`` (images relative to it) into ``out_dir/<split>-NNNNNN.tar``.

    ``workers`` processes write shards in parallel; each shard is written to a temp name and renamed, and
    the index ``<split>.shards.json`` is written last. Returns the index path. A record that is not valid
    JSON or whose image is missing stops the run with its line number.
    """
    manifest, out = Path(manifest), check_output_folder(out_dir, "--out")
    if manifest.is_dir():
        manifest = manifest_file(manifest, split or "train")
    if not manifest.is_file():
        raise DatasetError(f"manifest {manifest} does not exist; give a .jsonl manifest or a folder holding "
                           f"<split>.jsonl.")
    if samples_per_shard < 1 or workers < 1:
        raise DatasetError(f"--shard-size {samples_per_shard} and --workers {workers} must be >= 1.")
    _check_is_jsonl(manifest)
    split = split or manifest.stem
    # One pass notes where each shard's records start (byte offset, record index, line number); the
    # writers read their own lines from there, so the manifest is never held in memory.
    starts, records = [], 0
    with manifest.open("rb") as fh:
        offset = 0
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                if records % samples_per_shard == 0:
                    starts.append((offset, records, lineno))
                records += 1
            offset += len(line)
    if not records:
        raise DatasetError(f"manifest {manifest} has no records.")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(manifest), str(out / f"{split}-{s:06d}.tar"), at, first, lineno,
             min(samples_per_shard, records - first))
            for s, (at, first, lineno) in enumerate(starts)]
    try:
        entries = _write_all(jobs, workers, progress)
    except BaseException:  # a failed run leaves no temp files, and no --out folder it made itself
        for tmp in out.glob(f".{split}-*.tar.tmp"):
            tmp.unlink(missing_ok=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    index = out / f"{split}{INDEX_SUFFIX}"
    body = {"format": "umgkit-webdataset/1", "split": split, "samples": sum(e["samples"] for e in entries),
            "shards": entries}
    tmp = index.with_name(f".{index.name}.tmp")
    tmp.write_text(json.dumps(body, indent=1), encoding="utf-8")
    os.replace(tmp, index)
    return index


def _write_all(jobs: list[tuple], workers: int, progress: bool) -> list[dict]:
    """Every shard's index entry, written ``workers`` at a time; the bar closes before an error leaves,
    so the error prints on its own line."""
    from tqdm.auto import tqdm

    entries = []
    with tqdm(total=len(jobs), desc="shards", unit="shard", disable=not progress) as bar:
        if workers <= 1:
            for job in jobs:
                entries.append(_write_one(*job))
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for entry in pool.map(_write_one, *zip(*jobs, strict=True)):
                    entries.append(entry)
                    bar.update(1)
    return entries


def _write_one(manifest: str, shard: str, at: int, first: int, lineno: int, count: int) -> dict:
    """One shard with webdataset's TarWriter: ``count`` records from byte ``at`` of the manifest (the first
    is record ``first``, on line ``lineno``); keys are the records' positions in the manifest."""
    import webdataset as wds

    root, path = Path(manifest).parent, Path(shard)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(manifest, "rb") as fh, wds.TarWriter(str(tmp), encoder=False, mtime=0.0) as sink:
        fh.seek(at)
        written = 0
        while written < count:
            line = fh.readline()
            if not line.strip():
                lineno += 1
                continue
            where = f"{manifest}:{lineno}"
            try:
                rec = parse_record(line.decode("utf-8"), where, fix=_FIX_LINE)
            except UnicodeDecodeError as err:
                raise DatasetError(f"{where} is not UTF-8 text ({err.reason}); a manifest is JSONL, one JSON "
                                   f"record per line. {_FIX_LINE}") from err
            except BadSampleError as err:  # no data.skip_bad here: the record must be fixed
                raise DatasetError(str(err)) from err
            image = root / rec["image"]
            ext = image.suffix.lower().lstrip(".")
            if ext not in _IMAGE_EXTS:
                raise DatasetError(f"{where}: image {image} has extension .{ext}; shards take "
                                   f"{', '.join(_IMAGE_EXTS)}. {_FIX_LINE}")
            if not image.is_file():
                raise DatasetError(f"{where}: image {image} does not exist (images are relative to the "
                                   f"manifest's folder). {_FIX_LINE}")
            sink.write({"__key__": f"{first + written:09d}", "json": json.dumps(rec, sort_keys=True).encode(),
                        ext: image.read_bytes()})
            written, lineno = written + 1, lineno + 1
    os.replace(tmp, path)
    return {"url": path.name, "samples": count}


def _check_is_jsonl(manifest: Path) -> None:
    """Refuse at once a manifest whose first record is not a line of JSON text (an image, a folder's
    archive, a JSON array), before any shard is written."""
    with manifest.open("rb") as fh:
        first = next((line.strip() for line in fh if line.strip()), b"")
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if first and not text.startswith("{"):
        raise DatasetError(f"manifest {manifest} is not a JSONL manifest (its first line is not a JSON "
                           "object); give the .jsonl file that `umgkit data synth` or `umgkit annotate` "
                           "writes, one record per line.")


def read_index(path: str | Path) -> tuple[list[str], list[int]]:
    """``(shard URLs, sample counts)`` from a ``<split>.shards.json`` index (URLs relative to it resolved)."""
    path = Path(path)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        shards = body["shards"]
        urls = [s["url"] for s in shards]
        counts = [int(s["samples"]) for s in shards]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DatasetError(f"shard index {path} is unreadable ({err}); rewrite it with `umgkit data shards`."
                           ) from err
    resolved = [u if ":" in u.split("/")[0] else str(path.parent / u) for u in urls]
    return resolved, counts


# ---------------------------------------------------------------------------------------------- reading
@dataclass
class StreamPlan:
    """What the trainer asks of one epoch: per-process batches in all, already taken, and their size."""

    epoch: int = 0
    seed: int = 0  # the run's seed: shard order and shuffle buffers follow (seed, epoch)
    batch_size: int = 1
    batches: int | None = None  # per process; None: the whole split (no trainer plan)
    start_batch: int = 0  # per-process batches already consumed (resume)


class ShardStream(IterableDataset):
    """Items of the manifest reader from webdataset shards; see the module docstring."""

    def __init__(self, urls: Sequence[str], counts: Sequence[int] | None, *,
                 transform: Callable | None = None,
                 skip_bad: bool = False, shuffle_buffer: int = 1000, resampled: bool = False,
                 epoch_samples: int | None = None, where: str = "") -> None:
        self.urls, self.counts = list(urls), None if counts is None else [int(c) for c in counts]
        if not self.urls:
            raise DatasetError(f"no shards in {where or 'data.options.urls'}.")
        if self.counts is None and not (resampled and epoch_samples):
            raise DatasetError(f"{where}: shard sample counts are unknown (no index file); give "
                               "data.options.resampled=true with data.options.epoch_samples, or write the "
                               "shards with `umgkit data shards`, which records them.")
        self.transform, self.skip_bad = transform, bool(skip_bad)
        self.shuffle_buffer, self.resampled = int(shuffle_buffer), bool(resampled)
        self.epoch_samples = int(epoch_samples) if epoch_samples else None
        self.where = where
        self.plan_ = StreamPlan()
        self.class_names: list[str] = []
        self.num_skipped = 0

    # -- planning (trainer side)
    @property
    def num_samples(self) -> int:
        """Samples per epoch: all of the shards' records, or ``epoch_samples`` when resampling."""
        return self.epoch_samples if self.resampled and self.epoch_samples else sum(self.counts or [])

    def batches_per_epoch(self, batch_size: int, num_processes: int, num_workers: int) -> int:
        """Batches every process can take per epoch: with its own shards, a reader can give only full
        batches of its own records, so it is readers x the fewest full batches any reader holds."""
        readers = num_processes * max(1, num_workers)
        if self.resampled:
            return self.num_samples // (batch_size * num_processes)
        if len(self.urls) < readers:
            raise DatasetError(f"{self.where}: {len(self.urls)} shards for {readers} readers "
                               f"({num_processes} processes x {max(1, num_workers)} workers); every "
                               "reader needs its own shards: write more, smaller shards (umgkit data "
                               "shards --shard-size), lower data.num_workers, or set "
                               "data.options.resampled=true.")
        # The fewest records any reader can get, over every epoch's shard order: the smallest shards.
        per_reader = sum(sorted(self.counts)[: len(self.urls) // readers])
        return max(1, num_workers) * (per_reader // batch_size)

    def plan(self, plan: StreamPlan) -> None:
        """Set before iterating (workers receive a copy of this object when the epoch starts)."""
        self.plan_ = plan

    # -- iteration (worker side)
    def _reader(self) -> tuple[int, int, int, int]:
        dist = torch.distributed
        ready = dist.is_available() and dist.is_initialized()
        rank, world = (dist.get_rank(), dist.get_world_size()) if ready else (0, 1)
        info = get_worker_info()
        wid, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank, world, wid, workers

    def _my_shards(self, rank: int, world: int, wid: int, workers: int) -> Iterator[str]:
        seed, epoch = self.plan_.seed, self.plan_.epoch
        if self.resampled:  # with replacement, forever; each reader has its own draw
            rng = random.Random(f"{seed}-{epoch}-{rank}-{wid}")
            while True:
                yield rng.choice(self.urls)
        order = list(self.urls)
        random.Random(f"{seed}-{epoch}").shuffle(order)  # the same order on every process
        yield from order[rank::world][wid::workers]

    def _records(self, urls: Iterator[str]) -> Iterator[dict]:
        """webdataset samples ``{"__key__", "__url__", "json", <ext>: bytes}`` of ``urls`` in order."""
        from webdataset.tariterators import tarfile_samples

        return tarfile_samples({"url": u} for u in urls)

    def _quota(self, wid: int, workers: int) -> tuple[int | None, int]:
        """``(records this worker yields in the epoch, records it skips first)`` under the plan.

        The DataLoader takes batch i of a process from worker ``i % workers``; so of the first ``n``
        batches, worker w made ``ceil((n - w) / workers)``.
        """
        p = self.plan_

        def made(n: int) -> int:
            return max(0, math.ceil((n - wid) / workers))

        total = None if p.batches is None else made(p.batches) * p.batch_size
        return total, made(p.start_batch) * p.batch_size

    def __iter__(self) -> Iterator[dict | None]:
        rank, world, wid, workers = self._reader()
        # The DataLoader asks worker 0 first; on resume, the worker that made the next batch must answer
        # first, so worker ids are rotated by the batches already taken (the stream is then unbroken).
        wid = (wid + self.plan_.start_batch) % workers
        total, skip = self._quota(wid, workers)
        stream = self._records(self._my_shards(rank, world, wid, workers))
        if self.shuffle_buffer > 0:
            stream = _buffer_shuffle(stream, self.shuffle_buffer,
                                     random.Random(f"{self.plan_.seed}-{self.plan_.epoch}-{rank}-{wid}"))
        for n, sample in enumerate(stream):
            if total is not None and n >= total:
                return
            if n < skip:  # consumed before the checkpoint: not even decoded
                continue
            yield self._item(sample)

    def _item(self, sample: dict) -> dict | None:
        where = f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}"
        try:
            if "json" not in sample:
                raise BadSampleError(f"{where}: sample has no .json member; rewrite the shard or set "
                                     "data.skip_bad=true.")
            rec = parse_record(sample["json"], where)
            data = next((sample[e] for e in _IMAGE_EXTS if e in sample), None)
            if data is None:
                raise BadSampleError(f"{where}: sample has no image member; rewrite the shard or set "
                                     "data.skip_bad=true.")
            item = item_from_record(rec, decode_uint8(data, where), where)
        except BadSampleError:
            if not self.skip_bad:
                raise
            self.num_skipped += 1
            return None
        item["key"] = key = sample["__key__"]
        if self.transform is None:
            return item
        # The sample's augmentation depends on (seed, epoch, key) only: a resumed stream, whose workers
        # skipped records without drawing, crops each remaining sample as the unbroken run did.
        with seeded(item_seed(self.plan_.seed, self.plan_.epoch, key_index(key))):
            return self.transform(item)


def _buffer_shuffle(stream: Iterator[Any], size: int, rng: random.Random) -> Iterator[Any]:
    """Reservoir-style shuffle through ``size`` items (webdataset's ``shuffle`` stage, with our seed)."""
    buffer: list = []
    for item in stream:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = rng.randrange(size)
        yield buffer[j]
        buffer[j] = item
    rng.shuffle(buffer)
    yield from buffer


@DATASETS.register("webdataset")
def build_webdataset(root, split, transform=None, skip_bad=False, num_classes=None, limit=None, *,
                     urls: str | list[str] | None = None, shuffle_buffer: int = 1000, resampled: bool = False,
                     epoch_samples: int | None = None) -> ShardStream:
    """webdataset tar shards of manifest records, streamed (``umgkit data shards`` writes them).

    ``root`` is a folder holding ``<split>.shards.json`` (or that file); ``urls`` instead names shards
    directly (a brace pattern, ``pipe:`` command or list), then with ``resampled`` + ``epoch_samples``."""
    from webdataset.shardlists import expand_urls

    if num_classes is not None:
        raise DatasetError("webdataset shards have no class list; drop data.num_classes.")
    if limit is not None:
        raise DatasetError("data.limit does not apply to streamed shards; write a smaller shard set instead.")
    if urls:
        patterns = [urls] if isinstance(urls, str) else list(urls)
        found = [u for p in patterns for u in expand_urls(p)]
        return ShardStream(found, None, transform=transform, skip_bad=skip_bad, shuffle_buffer=shuffle_buffer,
                           resampled=resampled, epoch_samples=epoch_samples, where="data.options.urls")
    path = Path(root).expanduser()
    index = path if path.name.endswith(INDEX_SUFFIX) else path / f"{split}{INDEX_SUFFIX}"
    if not index.is_file():
        raise DatasetError(f"no shard index {index}; write the shards with `umgkit data shards MANIFEST "
                           f"--out {path}` or name them with data.options.urls.")
    found, counts = read_index(index)
    return ShardStream(found, counts, transform=transform, skip_bad=skip_bad, shuffle_buffer=shuffle_buffer,
                       resampled=resampled, epoch_samples=epoch_samples, where=str(index))
