"""Pretraining step cost on a ViT-B/16-sized dual encoder: token reduction and the SPARC loss.

Each variant is one full optimizer step of the ``pretrain`` task (forward, losses, backward, AdamW) on
the same synthetic batch (random images, captions, 3 boxes per image). Variants are timed in interleaved
rounds in one process, so drifting machine load hits them alike; the median per variant is reported.
Ratios (measured in this run):

- ``reduction_speedup``: CLIP-loss step with no reduction / with 75% cluster reduction (target >= 2.5);
  also the random-masking baseline;
- ``sparc_overhead``: CLIP + SPARC step / CLIP-only step, both without reduction (target <= 1.10).

Prints one JSON object.

    python benchmarks/pretrain.py        # umg:base16, 224 px (batch 64 on CUDA, 8 on CPU)
    python benchmarks/pretrain.py --backbone umg:tiny --image-size 64 --steps 3   # quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics

import torch
from _timing import device, synced

from umgkit.backbones import create_backbone
from umgkit.pretrain.model import PretrainModel
from umgkit.pretrain.task import PretrainTask

COLOURS = ("red", "green", "blue", "white", "yellow", "pink", "purple", "orange")
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon")


def make_batch(n: int, size: int, dev: torch.device, regions: int = 3) -> dict:
    """Random images with captions and ``regions`` boxes (+ box masks) per image, all distinct-ish."""
    g = torch.Generator().manual_seed(0)
    caps, rcaps, boxes, masks = [], [], [], []
    for i in range(n):
        names = [f"a {COLOURS[(i + k) % 8]} {SHAPES[(3 * i + k) % 8]}" for k in range(regions)]
        caps.append(", ".join(names[:-1]) + f" and {names[-1]} on grass above water")
        rcaps.append(names)
        xy = torch.randint(0, size // 2, (regions, 2), generator=g).float()
        wh = torch.randint(size // 8, size // 2, (regions, 2), generator=g).float()
        box = torch.cat([xy, xy + wh], dim=1)
        boxes.append(box.to(dev))
        m = torch.zeros(regions, size, size, dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(box.long().tolist()):
            m[k, y1:y2, x1:x2] = 1
        masks.append(m.to(dev))
    return {"image": torch.randn(n, 3, size, size, generator=g).to(dev), "caption": caps,
            "region_captions": rcaps, "region_tags": [[c.split()[1:] for c in r] for r in rcaps],
            "boxes": boxes, "masks": masks, "batch_size": n}


VARIANTS = {  # name -> (reduction, loss weights)
    "clip_none": ("none", {"image_text": 1.0}),
    "clip_cluster": ("cluster", {"image_text": 1.0}),
    "clip_random": ("random", {"image_text": 1.0}),
    "clip_sparc_none": ("none", {"image_text": 1.0, "sparc": 1.0}),
    "all_none": ("none", {"image_text": 1.0, "region_text": 1.0, "sparc": 1.0, "pixel": 1.0}),
    "all_cluster": ("cluster", {"image_text": 1.0, "region_text": 1.0, "sparc": 1.0, "pixel": 1.0}),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="umg:base16")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=None, help="default 64 on CUDA, 8 on CPU")
    p.add_argument("--steps", type=int, default=5, help="timed rounds (each variant once per round)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--keep-ratio", type=float, default=0.25)
    p.add_argument("--amp", choices=["auto", "bf16", "no"], default="auto", help="auto = bf16 on CUDA")
    args = p.parse_args()
    dev = device()
    batch_n = args.batch or (64 if dev.type == "cuda" else 8)
    amp = args.amp == "bf16" or (args.amp == "auto" and dev.type == "cuda")
    torch.manual_seed(0)
    backbone = create_backbone(args.backbone).to(dev)
    model = PretrainModel(backbone, reduction="none", keep_ratio=args.keep_ratio).to(dev).train()
    optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-5)
    batch = make_batch(batch_n, args.image_size, dev)
    tasks = {name: PretrainTask(model=model, train_dataset=None, weights=w, gather=False)
             for name, (_, w) in VARIANTS.items()}

    def step(name: str) -> float:
        model.reduction = VARIANTS[name][0]
        start = synced()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            loss = tasks[name].training_step(model, batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return synced() - start

    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for r in range(args.warmup + args.steps):
        for name in VARIANTS:
            t = step(name)
            if r >= args.warmup:
                times[name].append(t)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(json.dumps({
        "backbone": args.backbone, "image_size": args.image_size, "batch": batch_n,
        "keep_ratio": args.keep_ratio,
        "device": torch.cuda.get_device_name() if dev.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(), "bf16_autocast": amp, "rounds": args.steps,
        "step_seconds": {k: round(v, 4) for k, v in med.items()},
        "reduction_speedup": round(med["clip_none"] / med["clip_cluster"], 3),
        "reduction_speedup_random": round(med["clip_none"] / med["clip_random"], 3),
        "reduction_speedup_all_losses": round(med["all_none"] / med["all_cluster"], 3),
        "sparc_overhead": round(med["clip_sparc_none"] / med["clip_none"], 3),
        "targets": {"reduction_speedup": ">= 2.5", "sparc_overhead": "<= 1.10"},
    }, indent=2))


if __name__ == "__main__":
    main()
