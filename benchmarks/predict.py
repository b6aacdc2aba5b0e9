"""Predictor throughput vs the bare model forward on the same batches.

The `Predictor` reads image files, preprocesses them, runs the model and post-processes (label maps /
top-k); the bare forward runs the model alone on the same batches, already decoded, preprocessed and on
the device. Their images/s ratio is the price of going through the predictor (target >= 0.90). Untrained
weights (timing only). One JSON line; on a GPU pass the paper-sized settings:
    python benchmarks/predict.py                                   # CPU: umg:small, 224 px
    python benchmarks/predict.py --backbone umg:base16 --batch 32 --images 256   # GPU
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from _timing import device, synced
from PIL import Image

from umgkit.config import config_from_dict
from umgkit.models import Predictor, build_model


def _images(folder: Path, count: int, size: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"{i:06d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["semantic", "classification"], default="semantic")
    parser.add_argument("--backbone", default="umg:small")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    dev = device()
    head = {"semantic": "semantic_fpn", "classification": "linear"}[args.task]
    cfg = config_from_dict({"task": args.task,
                            "data": {"image_size": args.image_size, "batch_size": args.batch},
                            "model": {"backbone": args.backbone, "adapter": "lora", "head": head}})
    names = [f"class {i}" for i in range(10)]
    predictor = Predictor(build_model(cfg, names), device=dev, batch_size=args.batch)
    model = predictor.model
    with tempfile.TemporaryDirectory() as tmp:
        files = _images(Path(tmp), args.images, args.image_size)
        from umgkit.data import load_image

        tf = model.preprocess.transform()
        batches = [torch.stack([tf({"image": load_image(f)})["image"] for f in files[i:i + args.batch]])
                   .to(dev) for i in range(0, len(files), args.batch)]

        def bare() -> None:
            for batch in batches:
                model(batch) if args.task == "semantic" else model(images=batch)

        def full() -> None:
            predictor(files)

        bare(), full()  # warm-up: allocator, kernels, file cache
        times = {"bare": [], "predictor": []}
        for _ in range(args.rounds):  # interleaved, so drift of a shared machine hits both alike
            for name, fn in (("bare", bare), ("predictor", full)):
                start = synced()
                fn()
                times[name].append(synced() - start)
    bare_ips, pred_ips = (args.images / min(times[k]) for k in ("bare", "predictor"))
    ratio = pred_ips / bare_ips
    outputs = "label maps" if args.task == "semantic" else "top-k labels"
    print(json.dumps({
        "benchmark": "predict", "task": args.task, "backbone": args.backbone, "image_size": args.image_size,
        "batch": args.batch, "images": args.images, "device": str(dev),
        "bare_images_per_s": round(bare_ips, 2),
        "predictor_images_per_s": round(pred_ips, 2), "ratio": round(ratio, 3),
        "figures": [{"figure": f"predictor images/s vs bare forward ({args.task}, files -> {outputs})",
                     "ratio": ratio, "target": ">= 0.90",
                     "detail": f"{pred_ips:.1f} vs {bare_ips:.1f} images/s, {args.backbone} "
                               f"{args.image_size} px, batch {args.batch}, {dev}"}]}))


if __name__ == "__main__":
    main()
