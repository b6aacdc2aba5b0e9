"""Epoch time of a frozen linear probe with vs without the feature cache (umg:tiny, synthetic world).

Prints one JSON object: seconds per epoch (fit time / epochs, one evaluation included) for both,
their ratio, and the one-off cache build time.
Small on purpose (runs in well under 2 minutes on 2 CPU cores):
    python benchmarks/feature_cache.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from umgkit._builtins import import_builtins
from umgkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from umgkit.data.synth import generate_world
from umgkit.engine import Trainer
from umgkit.registry import TASKS


def _epoch_seconds(root: Path, out: Path, cache: bool, epochs: int = 2) -> tuple[float, float]:
    cfg = RunConfig(task="classification", output_dir=str(out / f"run_{cache}"), seed=0,
                    model=ModelConfig(backbone="umg:tiny", adapter="frozen", head="linear"),
                    data=DataConfig(root=str(root), image_size=64, batch_size=16, eval_batch_size=32),
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
    import_builtins()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate_world(out / "world", num=160, size=64, seed=0, progress=False)
        root = out / "world" / "imagefolder"
        plain, _ = _epoch_seconds(root, out, cache=False)
        cached, build = _epoch_seconds(root, out, cache=True)
    speedup = plain / max(cached, 1e-9)
    print(json.dumps({"benchmark": "feature_cache", "epoch_s_without_cache": round(plain, 4),
                      "epoch_s_with_cache": round(cached, 4), "speedup": round(speedup, 1),
                      "cache_build_s": round(build, 3),
                      # target: the cache exists to make linear-probe epochs several times cheaper
                      "figures": [{"figure": "frozen linear-probe epoch speed-up with the feature cache",
                                   "ratio": speedup, "target": ">= 2.0",
                                   "detail": f"{plain:.2f} s/epoch without, {cached:.2f} s/epoch with; "
                                             f"cache built once in {build:.1f} s"}]}))


if __name__ == "__main__":
    main()
