"""Pretraining loader throughput: webdataset shards (uint8 decode, crop, then float) vs the JSONL manifest
reader (float decode of the whole image, then crop), on the same images of the synthetic world.

Prints one JSON object with images/s per DataLoader worker for both and their ratio (target >= 1.0).
    python benchmarks/data_pipeline.py [--num 480] [--size 320] [--image-size 224] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

from umgkit.data import ManifestDataset, collate_dicts
from umgkit.data.shards import ShardStream, StreamPlan, read_index, write_shards
from umgkit.data.synth import generate_world
from umgkit.data.transforms import build_transforms


def _images_per_s(loader: DataLoader, warmup: int = 2) -> float:
    count, start = 0, None
    for i, batch in enumerate(loader):
        if i == warmup:
            count, start = 0, time.perf_counter()
        count += batch["batch_size"]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=480, help="images in the world (train ~80%%)")
    parser.add_argument("--size", type=int, default=320, help="side of the stored images")
    parser.add_argument("--image-size", type=int, default=224, help="training crop side")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers for both readers")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    transform = build_transforms("detection", train=True, image_size=args.image_size, scale=(0.9, 1.0),
                                 hflip=0.0)  # the pretraining task's crop
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        generate_world(world, num=args.num, size=args.size, seed=0, progress=False)
        manifest = ManifestDataset(world / "manifest", "train", transform=transform)
        index = write_shards(world / "manifest" / "train.jsonl", Path(tmp) / "shards",
                             samples_per_shard=max(1, len(manifest) // (4 * args.workers)), workers=2)
        urls, counts = read_index(index)
        stream = ShardStream(urls, counts, transform=transform, shuffle_buffer=100)
        batches = stream.batches_per_epoch(args.batch_size, 1, args.workers)
        stream.plan(StreamPlan(batch_size=args.batch_size, batches=batches))
        options = {"batch_size": args.batch_size, "num_workers": args.workers, "collate_fn": collate_dicts,
                   "drop_last": True}
        shards_rate = _images_per_s(DataLoader(stream, **options))
        manifest_rate = _images_per_s(DataLoader(manifest, shuffle=True, **options))
    rates = {"shards": shards_rate, "manifest": manifest_rate}
    per_worker = {k: v / max(1, args.workers) for k, v in rates.items()}
    ratio = per_worker["shards"] / per_worker["manifest"]
    print(json.dumps({"benchmark": "data_pipeline", "images": len(manifest), "stored_side": args.size,
                      "crop": args.image_size, "workers": args.workers,
                      "images_per_s_per_worker": {k: round(v, 1) for k, v in per_worker.items()},
                      "figures": [{"figure": "pretraining loader images/s per worker, webdataset shards vs "
                                             "manifest reader", "ratio": ratio, "target": ">= 1.0",
                                   "detail": f"{per_worker['shards']:.1f} vs {per_worker['manifest']:.1f} "
                                             f"images/s per worker ({args.size} px images, {args.image_size} "
                                             "px crops)"}]}))


if __name__ == "__main__":
    main()
