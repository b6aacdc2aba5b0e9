"""Run the toy task from the command line: ``python _run_toy.py <output_dir> [key.path=value ...]``.

Used by the engine tests as a subprocess (to kill it mid-run, or under torchrun for two processes).
"""

import json
import logging
import sys

from _toy_task import make_config, run

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    trainer, metrics = run(make_config(sys.argv[1], sys.argv[2:]))
    if trainer.accelerator.is_main_process:
        print("METRICS " + json.dumps(metrics), flush=True)
