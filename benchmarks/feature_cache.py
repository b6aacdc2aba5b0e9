"""Epoch time of a frozen linear probe with vs without the feature cache (synthetic world).

Prints one JSON object: seconds per epoch (fit time / epochs, one evaluation included) for both, the
cached epoch's share of the uncached one (target <= 5 %), and the one-off cache build time. The default
is a ViT-B/16 at 224 px, the size where probing is done; a tiny backbone measures the loader instead.
    python benchmarks/feature_cache.py                                   # umg:base16, 224 px (~2 min, 2 CPUs)
    python benchmarks/feature_cache.py --backbone umg:tiny --image-size 64   # loader-bound
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from umgkit._builtins import import_builtins
from umgkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from umgkit.data.synth import generate_world
from umgkit.engine import Trainer
from umgkit.registry import TASKS


def _epoch_seconds(args: argparse.Namespace, root: Path, out: Path, cache: bool, epochs: int = 2
                   ) -> tuple[float, float]:
    cfg = RunConfig(task="classification", output_dir=str(out / f"run_{cache}"), seed=0,
                    model=ModelConfig(backbone=args.backbone, adapter="frozen", head="linear"),
                    data=DataConfig(root=str(root), image_size=args.image_size, batch_size=16,
                                    eval_batch_size=32),
                    train=TrainConfig(epochs=epochs, lr=1e-2, progress=False),
                    task_options={"cache_features": cache, "cache_dir": str(out / "cache")})
    start = time.perf_counter()
    task = TASKS.build("classification", cfg=cfg)
    built = time.perf_counter()
    trainer = Trainer(task, cfg)
    fit_start = time.perf_counter()
    trainer.fit()  # `epochs` epochs + one evaluation (both on cached features when cache is on)
    return (time.perf_counter() - fit_start) / epochs, built - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="umg:base16", help="a registry backbone (random weights)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--num", type=int, default=160, help="images in the world (80 %% train)")
    args = parser.parse_args()
    import_builtins()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate_world(out / "world", num=args.num, size=args.image_size, seed=0, progress=False)
        root = out / "world" / "imagefolder"
        plain, _ = _epoch_seconds(args, root, out, cache=False)
        cached, build = _epoch_seconds(args, root, out, cache=True)
    share = cached / max(plain, 1e-9)
    print(json.dumps({"benchmark": "feature_cache", "backbone": args.backbone, "image_size": args.image_size,
                      "epoch_s_without_cache": round(plain, 4), "epoch_s_with_cache": round(cached, 4),
                      "speedup": round(1 / max(share, 1e-9), 1), "cache_build_s": round(build, 3),
                      "figures": [{"figure": "cached linear-probe epoch / uncached epoch (time)",
                                   "ratio": share, "target": "<= 0.05",
                                   "detail": f"{args.backbone} at {args.image_size} px: {plain:.2f} s/epoch "
                                             f"without, {cached:.2f} s/epoch with; cache built once in "
                                             f"{build:.1f} s"}]}))


if __name__ == "__main__":
    main()
