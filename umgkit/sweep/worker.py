"""A search worker: asks trials of every cell's study until the budgets are used, each in a child process.

``python -m umgkit.sweep.worker SWEEP_DIR INDEX`` is what ``umgkit sweep --workers N`` starts N times; the
same loop on another machine (``umgkit sweep SPEC --storage URL`` there) shares the studies. A trial:
the child ``python -m umgkit.sweep.trial`` (behind the spec's launcher) trains into
``SWEEP/trials/<cell>/<number>/``; while it runs its ``metrics.jsonl`` val curve is reported to the pruner,
which may stop it (PRUNED). A child that fails is recorded FAIL with its exit code and the tail of its log
(trial user attrs and ``error.txt``), and the search goes on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .spec import Cell, SweepSpec, override_text
from .trial import read_trial

__all__ = ["trial_command", "run_child", "search_cell", "main", "LOG_FILE", "ERROR_FILE", "cell_metric"]

LOG_FILE = "log.txt"  # the child's stdout and stderr
ERROR_FILE = "error.txt"  # why a trial failed
_POLL_S = 0.5
_TAIL_CHARS = 2000


def trial_command(spec: SweepSpec, config: Path, folder: Path, overrides: list[str]) -> list[str]:
    launcher = list(spec.launcher) or [sys.executable]
    return [*launcher, "-m", "umgkit.sweep.trial", str(config), str(folder), *overrides]


def run_child(command: list[str], folder: Path, poll: Callable[[], bool] | None = None) -> tuple[int, bool]:
    """Run ``command`` with its output in ``folder/log.txt``; ``poll()`` returning True stops it.

    Returns ``(exit code, stopped)``. The child stays in this process group: killing the sweep's group
    (``kill -9 -PGID``) ends its trials too.
    """
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (folder / LOG_FILE).open("ab") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env)
        try:
            while child.poll() is None:
                time.sleep(_POLL_S)
                if poll is not None and child.poll() is None and poll():
                    child.terminate()
                    try:
                        child.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        child.wait()
                    return child.returncode, True
        finally:
            if child.poll() is None:  # this process is being stopped: take the child along
                child.kill()
                child.wait()
    return child.returncode, False


def log_tail(folder: Path) -> str:
    path = folder / LOG_FILE
    return path.read_text(encoding="utf-8", errors="replace")[-_TAIL_CHARS:] if path.is_file() else ""


def cell_metric(spec: SweepSpec, cell: Cell) -> str:
    """The metric ``cell`` optimises: the spec's, else the task's headline metric."""
    if cell.metric:
        return cell.metric
    from ..config import load_config
    from .spec import DEFAULT_METRICS

    task = load_config(cell.config, spec.cell_overrides(cell)).task
    if task not in DEFAULT_METRICS:
        from ..errors import ConfigError

        raise ConfigError(f"sweep spec {spec.path}: metric: task {task!r} of {cell.config.name} has no "
                          f"default metric; name one (metric: {{{cell.config.stem}: KEY}}).")
    return DEFAULT_METRICS[task]


def search_cell(spec: SweepSpec, cell: Cell, sweep_dir: Path, storage, worker: int) -> None:
    """Run ``cell``'s trials until its budget is used (shared with every other worker)."""
    from optuna.trial import TrialState

    from .study import ask_within_budget, open_study, suggest

    study = open_study(storage, spec, cell, seed=worker)
    metric = cell_metric(spec, cell)
    budget = spec.budget(cell)
    while True:
        trial = ask_within_budget(study, budget, sweep_dir / ".ask.lock")
        if trial is None:
            return
        params = suggest(trial, cell.spaces)
        folder = sweep_dir / "trials" / cell.name / str(trial.number)
        trial.set_user_attr("folder", str(folder.relative_to(sweep_dir)))
        searched = [f"{k}={override_text(v)}" for k, v in params.items()]
        overrides = [*spec.cell_overrides(cell), *searched]
        command = trial_command(spec, cell.config, folder, overrides)
        code, pruned = run_child(command, folder, _pruning_check(trial, folder, metric))
        record = read_trial(folder)
        if pruned:
            study.tell(trial, state=TrialState.PRUNED)
            continue
        error = None
        if code != 0 or record is None:
            error = f"the trial's process exited with code {code}:\n{log_tail(folder)}"
        elif metric not in record["metrics"]:
            error = (f"the run returned no metric {metric!r} (it returned {sorted(record['metrics'])}); "
                     f"set metric: in the sweep spec to one of those.")
        if error is not None:
            (folder / ERROR_FILE).write_text(error + "\n", encoding="utf-8")
            trial.set_user_attr("exit_code", code)
            trial.set_user_attr("error", error[-_TAIL_CHARS:])
            study.tell(trial, state=TrialState.FAIL)
            if code == 0:  # the metric is missing: every trial of this cell would fail the same way
                return
            continue
        for key in ("trainable_params", "peak_memory_bytes", "seconds"):
            trial.set_user_attr(key, record[key])
        study.tell(trial, record["metrics"][metric])


def _pruning_check(trial, folder: Path, metric: str) -> Callable[[], bool]:
    """A ``poll`` for `run_child`: reports new ``val/<metric>`` rows of the run to the pruner; True = stop."""
    seen: set[int] = set()

    def check() -> bool:
        for step, value in _val_curve(folder, metric):
            if step not in seen:
                seen.add(step)
                trial.report(value, step)
        return bool(seen) and trial.should_prune()

    return check


def _val_curve(folder: Path, metric: str) -> list[tuple[int, float]]:
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return []
    curve = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a line being written
            continue
        value = row.get(f"val/{metric}")
        if isinstance(value, (int, float)):
            curve.append((int(row["step"]), float(value)))
    return curve




def main(argv: list[str] | None = None) -> int:
    from .record import load_sweep_record
    from .study import open_storage

    args = list(sys.argv[1:] if argv is None else argv)
    sweep_dir, worker = Path(args[0]), int(args[1])
    spec, storage_url = load_sweep_record(sweep_dir)
    storage = open_storage(storage_url)
    for cell in spec.cells():
        search_cell(spec, cell, sweep_dir, storage, worker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
