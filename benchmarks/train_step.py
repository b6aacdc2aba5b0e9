"""umgkit's training step vs a hand-written peft + timm loop on the same model and batch.

umgkit side: the engine's real loop (`Trainer.fit` driving the classification task's ``training_step``,
Accelerate's backward, AdamW step, LR schedule, logging window) on ``timm:<model>`` from
`create_backbone` + umgkit's ``lora`` adapter + the ``linear`` head. Hand-written side: the same
``timm.create_model(<model>, num_classes=0, dynamic_img_size=True)`` wrapped by peft's
``get_peft_model(LoraConfig(...))`` + ``nn.Linear``, a plain ``forward / backward / step`` loop.
Both: LoRA rank 8, alpha 8, on every block's ``attn.qkv``; AdamW; the same batch tensors; fp32.

A step's time is the gap between consecutive optimizer steps, so it includes everything the loop does
per step, data loading included: the hand-written loop reads the same in-memory samples through a plain
``DataLoader`` and moves each batch to the device, as such a loop would (``--hand-data preloaded``
keeps one batch on the device instead, which isolates the model step). The two sides alternate in
rounds within one process (same threads, drift hits both); the figure is the ratio of median step
times, ``ratio = umgkit steps/s / hand-written steps/s`` (target >= 0.95). Prints one JSON object.

    python benchmarks/train_step.py          # CPU default: vit_tiny_patch16_224 at 160 px, batch 8
    python benchmarks/train_step.py --model vit_base_patch16_224 --image-size 224 --batch 64 --steps 20 \
        --warmup 5                           # GPU-sized

The CPU default times 8 steps per side (10 run); ViT-S/B at 224 px
make each CPU step several seconds, so use them on a GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from _timing import synced
from torch import nn
from torch.utils.data import DataLoader, Dataset

RANK, ALPHA, NUM_CLASSES = 8, 8.0, 10


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak() -> int:
    return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0


PEAK: dict[str, int] = {}  # CUDA peak bytes per side (max over rounds)


class RepeatBatch(Dataset):
    """``length`` items cycling through one fixed batch (the engine's loader then re-batches them)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, length: int) -> None:
        self.images, self.labels, self.length = images, labels, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        j = i % len(self.labels)
        return {"image": self.images[j], "label": int(self.labels[j]), "path": f"item{j}"}


def umgkit_step_times(args: argparse.Namespace, images: torch.Tensor, labels: torch.Tensor,
                      out: Path) -> list[float]:
    """Seconds between consecutive optimizer steps of `Trainer.fit` (first ``warmup`` dropped)."""
    from umgkit._builtins import import_builtins
    from umgkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from umgkit.engine import Trainer
    from umgkit.models import build_model
    from umgkit.tasks.classification import ClassificationTask

    import_builtins()
    steps = args.warmup + args.steps
    cfg = RunConfig(
        task="classification", output_dir=str(out), seed=0,
        model=ModelConfig(backbone=f"timm:{args.model}", adapter="lora",
                          adapter_options={"rank": RANK, "alpha": ALPHA, "target_modules": ["attn.qkv"]}),
        data=DataConfig(batch_size=args.batch, image_size=args.image_size, val_split=""),
        train=TrainConfig(max_steps=steps, lr=1e-4, log_every=10_000, progress=False))
    model = build_model(cfg, class_names=[str(c) for c in range(NUM_CLASSES)])
    data = RepeatBatch(images, labels, args.batch * steps)
    task = ClassificationTask(model=model, train_dataset=data, val_dataset=None,
                              class_names=[str(c) for c in range(NUM_CLASSES)])
    trainer = Trainer(task, cfg)
    stamps: list[float] = []
    # A post-step hook on the wrapped torch optimizer: patching `step` itself would trip torch's scheduler
    # check, and an attribute on the scheduler would end up in its checkpointed state_dict.
    inner = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    inner.register_step_post_hook(lambda *_: stamps.append(synced()))
    reset_peak()
    stamps.append(synced())
    trainer.fit()  # also saves one checkpoint after the last step, outside the timed gaps
    PEAK["umgkit"] = max(PEAK.get("umgkit", 0), peak())
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return gaps[args.warmup:]


def peft_step_times(args: argparse.Namespace, images: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """The same model and batch in a plain loop: timm + peft LoRA + nn.Linear, AdamW."""
    import timm
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vit = timm.create_model(args.model, pretrained=False, num_classes=0, dynamic_img_size=True)
    vit = get_peft_model(vit, LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=["qkv"]))
    head = nn.Linear(vit.num_features, NUM_CLASSES)
    model = nn.Sequential(vit, head).to(dev).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    steps = args.warmup + args.steps
    if args.hand_data == "loader":  # what a hand-written loop does: a DataLoader, then .to(device)
        batches = DataLoader(RepeatBatch(images, labels, args.batch * steps), batch_size=args.batch,
                             shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0))
    else:  # the batch already on the device: the model step alone
        batches = [{"image": images.to(dev), "label": labels.to(dev)}] * steps
    reset_peak()
    stamps = [synced()]
    for batch in batches:
        x, y = batch["image"].to(dev), batch["label"].to(dev)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        stamps.append(synced())
    PEAK["handwritten"] = max(PEAK.get("handwritten", 0), peak())
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return gaps[args.warmup:]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_tiny_patch16_224", help="timm model name (random init)")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per side per round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per side per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of both sides")
    parser.add_argument("--hand-data", choices=["loader", "preloaded"], default="loader",
                        help="hand-written side: batches from a DataLoader (like the engine; default) or "
                             "one batch kept on the device (model step only)")
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be >= 1 (the first umgkit gap includes starting the run)")

    import logging

    logging.disable(logging.INFO)  # the engine's per-epoch notes would interleave with the JSON
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.image_size, args.image_size)
    labels = torch.randint(0, NUM_CLASSES, (args.batch,))
    umg, hand = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ("hand", "umgkit") if r % 2 == 0 else ("umgkit", "hand")
            for side in order:
                if side == "hand":
                    hand += peft_step_times(args, images, labels)
                else:
                    umg += umgkit_step_times(args, images, labels, Path(tmp) / f"run{r}")
            print(f"[train_step] round {r}: umgkit {statistics.median(umg) * 1e3:.0f} ms, "
                  f"hand-written {statistics.median(hand) * 1e3:.0f} ms", file=sys.stderr)
    umg_s, hand_s = statistics.median(umg), statistics.median(hand)
    ratio = hand_s / umg_s
    gpu = torch.cuda.is_available()
    result = {
        "benchmark": "train_step", "model": f"timm:{args.model}", "device": "cuda" if gpu else "cpu",
        "threads": torch.get_num_threads(), "batch": args.batch, "image_size": args.image_size,
        "lora": {"rank": RANK, "alpha": ALPHA, "targets": "attn.qkv"}, "timed_steps_per_side": len(umg),
        "hand_data": args.hand_data,
        "umgkit_step_s": umg_s, "handwritten_step_s": hand_s,
        "umgkit_steps_per_s": 1 / umg_s, "handwritten_steps_per_s": 1 / hand_s,
        "umgkit_images_per_s": args.batch / umg_s, "handwritten_images_per_s": args.batch / hand_s,
        "ratio": ratio,
    }
    detail = (f"umgkit {args.batch / umg_s:.1f} img/s, hand-written {args.batch / hand_s:.1f} img/s "
              f"({args.model}, {args.image_size} px, batch {args.batch})")
    if gpu:
        result["peak_memory_bytes"] = dict(PEAK)
        detail += (f"; peak {PEAK['umgkit'] / 2**30:.2f} GiB vs {PEAK['handwritten'] / 2**30:.2f} GiB")
    result["figures"] = [{"figure": "umgkit train step / hand-written peft+timm step (steps/s)",
                          "ratio": ratio, "target": ">= 0.95", "detail": detail}]
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
