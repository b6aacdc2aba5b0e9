"""One sweep trial in its own process: an ordinary ``umgkit train`` run plus ``trial.json`` with its cost.

``python -m umgkit.sweep.trial CONFIG OUTPUT_DIR [KEY=VALUE ...]`` trains ``CONFIG`` with the overrides
into ``OUTPUT_DIR`` (a run folder ``umgkit eval`` reads) through the public `train_and_save`, then writes
``OUTPUT_DIR/trial.json``: the final val metrics, trainable / frozen backbone parameters, peak memory and
seconds. A spec's ``launcher`` (``accelerate launch ...``) may prefix the command; the main process writes
the file. A user mistake (bad config value) exits 2 with its one-line message, as ``umgkit train`` does.

Peak memory is ``torch.cuda.max_memory_allocated`` when the run used CUDA (``peak_memory_kind``
``cuda_max_allocated``), otherwise this process's maximum resident set size from ``getrusage``
(``cpu_max_rss``, which includes Python and the libraries, not only tensors).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

__all__ = ["TRIAL_FILE", "run_trial", "read_trial", "main"]

TRIAL_FILE = "trial.json"


def run_trial(config: str | os.PathLike, output_dir: str | os.PathLike, overrides: list[str]) -> dict:
    """Train, save the model folder, write and return the ``trial.json`` record."""
    import torch

    from .._builtins import import_builtins
    from .._io import atomic_write_text
    from ..config import load_config
    from ..demo.stages import count_parameters
    from ..tasks.run import train_and_save

    cfg = load_config(config, [*overrides, f"output_dir={output_dir}", "train.overwrite=true",
                               "train.progress=false"])
    import_builtins()
    start = time.perf_counter()
    task, metrics = train_and_save(cfg)
    seconds = time.perf_counter() - start
    trainable, frozen = count_parameters(task.model)
    on_cuda = torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0
    peak = (torch.cuda.max_memory_allocated() if on_cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # Linux reports KiB
    record = {"task": cfg.task, "metrics": {k: float(v) for k, v in metrics.items()},
              "trainable_params": int(trainable), "backbone_params": int(frozen),
              "peak_memory_bytes": int(peak), "peak_memory_kind": "cuda_max_allocated" if on_cuda
              else "cpu_max_rss", "seconds": round(seconds, 3), "config": str(config),
              "overrides": list(overrides)}
    if int(os.environ.get("RANK", "0")) == 0:
        atomic_write_text(Path(output_dir) / TRIAL_FILE, json.dumps(record, indent=1) + "\n")
    return record


def read_trial(folder: str | os.PathLike) -> dict | None:
    """The ``trial.json`` of a finished trial folder, or None when the trial has not finished."""
    path = Path(folder) / TRIAL_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    from ..errors import UmgkitError

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print("usage: python -m umgkit.sweep.trial CONFIG OUTPUT_DIR [KEY=VALUE ...]", file=sys.stderr)
        return 2
    try:
        run_trial(args[0], args[1], args[2:])
    except UmgkitError as err:
        print(f"umgkit sweep trial: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
