"""Adapter cost on a ViT-B/16-sized backbone: step time and peak memory relative to full fine-tuning,
and merged-LoRA inference time relative to the plain backbone.

Each adapter runs in its own subprocess so its peak memory is its own: on CPU that is the peak resident
set size (ru_maxrss), on CUDA ``torch.cuda.max_memory_allocated``. Prints one JSON object.

    python benchmarks/adapters.py                       # umg:base16, batch 4, 224 px
    python benchmarks/adapters.py --backbone umg:tiny --image-size 64 --steps 3   # quick look
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys

import torch
from _timing import device, synced
from torch import nn

from umgkit.adapters import apply_adapter, merge_adapter, parameter_report
from umgkit.backbones import create_backbone

# Options giving each method its usual paper setting.
ADAPTER_OPTIONS = {
    "full": {}, "frozen": {}, "lora": {"rank": 8}, "lora_qv": {"rank": 8}, "adaptformer": {"bottleneck": 8},
    "adapter": {"bottleneck": 8}, "vpt": {"num_tokens": 10, "deep": True}, "bitfit": {}, "ssf": {},
}


def measure_training(args: argparse.Namespace, name: str) -> dict:
    """Median seconds per optimizer step and peak memory for one adapter (run in a fresh process)."""
    torch.manual_seed(0)
    dev = device()
    backbone = create_backbone(args.backbone)
    apply_adapter(backbone, name, **ADAPTER_OPTIONS[name])
    head = nn.Linear(backbone.embed_dim or backbone.width, 10)
    model = nn.ModuleDict({"backbone": backbone, "head": head}).to(dev).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    images = torch.randn(args.batch, 3, args.image_size, args.image_size, device=dev)
    labels = torch.randint(0, 10, (args.batch,), device=dev)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(args.warmup + args.steps):
        start = synced()
        loss = nn.functional.cross_entropy(head(backbone.encode_image(images)), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= args.warmup:
            times.append(synced() - start)
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    report = parameter_report(backbone)
    return {"step_s": statistics.median(times), "peak_bytes": peak, "trainable": report["trainable"],
            "images_per_s": args.batch / statistics.median(times)}


def measure_merged_inference(args: argparse.Namespace) -> dict:
    """Forward time of a backbone with LoRA merged in vs the same backbone without any adapter."""
    torch.manual_seed(0)
    dev = device()
    images = torch.randn(args.batch, 3, args.image_size, args.image_size, device=dev)
    plain = create_backbone(args.backbone).to(dev).eval()
    merged = create_backbone(args.backbone)
    merge_adapter(merged, apply_adapter(merged, "lora", **ADAPTER_OPTIONS["lora"]))
    merged = merged.to(dev).eval()
    times = {"plain": [], "merged": []}
    with torch.no_grad():
        for model in (plain, merged):  # warm both first
            for _ in range(args.warmup):
                model.encode_image(images)
        for _ in range(args.infer_steps):  # interleave so drift in machine load hits both alike
            for key, model in (("plain", plain), ("merged", merged)):
                start = synced()
                model.encode_image(images)
                times[key].append(synced() - start)
    plain_s, merged_s = statistics.median(times["plain"]), statistics.median(times["merged"])
    return {"plain_s": plain_s, "merged_lora_s": merged_s, "speed_ratio": plain_s / merged_s,
            "extra_params_after_merge": parameter_report(merged)["total"] - parameter_report(plain)["total"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="umg:base16")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--infer-steps", type=int, default=15, help="timed forwards per model (inference)")
    parser.add_argument("--adapters", nargs="+", default=list(ADAPTER_OPTIONS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: measure one adapter and exit
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure_training(args, args.worker)))
        return
    base = [sys.executable, __file__, "--backbone", args.backbone, "--batch", str(args.batch),
            "--image-size", str(args.image_size), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    runs = {}
    for name in dict.fromkeys(["full", *args.adapters]):
        out = subprocess.run([*base, "--worker", name], capture_output=True, text=True, check=True).stdout
        runs[name] = json.loads(out.strip().splitlines()[-1])
        print(f"[adapters] {name}: {runs[name]['step_s'] * 1e3:.0f} ms/step", file=sys.stderr)
    full = runs["full"]
    result = {
        "benchmark": "adapters", "backbone": args.backbone, "device": str(device()), "batch": args.batch,
        "image_size": args.image_size, "memory": "cuda max_memory_allocated" if torch.cuda.is_available()
        else "peak RSS of the process (includes the Python/torch runtime)",
        "adapters": {name: {**r, "step_time_vs_full": r["step_s"] / full["step_s"],
                            "peak_memory_vs_full": r["peak_bytes"] / full["peak_bytes"]}
                     for name, r in runs.items()},
        "merged_lora_inference": measure_merged_inference(args),
    }
    result["figures"] = figures(result)
    print(json.dumps(result, indent=2))


def figures(result: dict) -> list[dict]:
    """Headline ratios for `umgkit bench`: per adapter, step time and peak memory vs full fine-tuning
    (memory target <= 1: a PET method must not cost more than training everything), and merged-LoRA
    inference speed vs the plain backbone (target >= 0.98: merging should make LoRA free)."""
    gpu = result["device"].startswith("cuda")
    out = []
    for name, r in result["adapters"].items():
        if name == "full":
            continue
        detail = f"{r['images_per_s']:.1f} img/s (full: {result['adapters']['full']['images_per_s']:.1f})"
        if gpu:
            detail += f", peak {r['peak_bytes'] / 2**30:.2f} GiB"
        out.append({"figure": f"{name}: step time / full FT", "ratio": r["step_time_vs_full"], "target": None,
                    "detail": detail})
        out.append({"figure": f"{name}: peak memory / full FT", "ratio": r["peak_memory_vs_full"],
                    "target": "<= 1.0"})
    merged = result["merged_lora_inference"]
    out.append({"figure": "merged-LoRA inference speed / plain backbone", "ratio": merged["speed_ratio"],
                "target": ">= 0.98",
                "detail": f"plain {merged['plain_s'] * 1e3:.1f} ms, merged "
                          f"{merged['merged_lora_s'] * 1e3:.1f} ms per batch of {result['batch']}"})
    return out


if __name__ == "__main__":
    main()
