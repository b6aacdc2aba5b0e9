"""Hyper-parameter sweeps over configs x methods on Optuna (``umgkit sweep``): see docs/sweeps.md.

Importing this package does not import Optuna; the command asks for it when it runs.
"""

from .report import write_report
from .run import check_spec, run_sweep
from .spec import SweepSpec, load_spec

__all__ = ["SweepSpec", "load_spec", "check_spec", "run_sweep", "write_report"]
