"""Pretrain on webdataset shards, logging the sample keys of every training step (one file per rank).

``python _run_stream.py CONFIG IDS_DIR [--kill-after N] [key=value ...]``, under torch.distributed.run.
Each call of the task's step appends ``{"call": i, "keys": [...]}`` to ``IDS_DIR/rank<r>.jsonl``;
``--kill-after N`` ends rank 0 abruptly (os._exit) in its N-th step call, as a killed job would end.
"""

import json
import os
import sys
from pathlib import Path

from umgkit.config import load_config
from umgkit.engine import Trainer
from umgkit.tasks import build_task


def main(argv: list[str]) -> None:
    config, ids_dir, rest = argv[0], Path(argv[1]), argv[2:]
    kill_after = None
    if rest[:1] == ["--kill-after"]:
        kill_after, rest = int(rest[1]), rest[2:]
    task = build_task(load_config(config, rest))
    rank = int(os.environ.get("RANK", "0"))
    ids_dir.mkdir(parents=True, exist_ok=True)
    log = (ids_dir / f"rank{rank}.jsonl").open("a", encoding="utf-8")
    step, calls = task.training_step, [0]

    def logged_step(model, batch):
        calls[0] += 1
        if kill_after is not None and rank == 0 and calls[0] == kill_after:
            os._exit(17)
        log.write(json.dumps({"call": calls[0], "keys": list(batch.get("key", []))}) + "\n")
        log.flush()
        return step(model, batch)

    task.training_step = logged_step
    Trainer(task, load_config(config, rest)).fit()
    log.close()


if __name__ == "__main__":
    main(sys.argv[1:])
