"""``umgkit sweep``: search every cell with N workers, re-run each cell's best setting per seed, report.

The sweep folder holds ``sweep.json`` (the spec's path, the storage and the cells: enough to resume and
to rebuild the report), the Optuna journal, ``trials/<cell>/<number>/`` (ordinary run folders),
``final/<cell>/best.json`` + ``final/<cell>/seed<k>/`` and the report files (see `umgkit.sweep.report`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import ConfigError, RunFolderError
from .record import SWEEP_FILE, write_record
from .spec import Cell, SweepSpec, load_spec, override_text
from .trial import read_trial

__all__ = ["run_sweep", "check_spec"]

_FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def check_spec(spec: SweepSpec) -> dict[str, str]:
    """Load every cell's config with its overrides and a value of each searched key (no data, no
    training); returns ``{cell: metric}``. A config error names the cell."""
    from ..config import load_config
    from .worker import cell_metric

    metrics = {}
    for cell in spec.cells():
        trial = [f"{s.key}={override_text(s.first())}" for s in cell.spaces]
        try:
            for final in (False, True):
                load_config(cell.config, [*spec.cell_overrides(cell, final=final), *trial, "seed=0"])
            metrics[cell.name] = cell_metric(spec, cell)
        except ConfigError as err:
            where = f"sweep spec {spec.path}, cell {cell.name} ({cell.config.name})"
            raise ConfigError(f"{where}: {err}") from None
    return metrics


def run_sweep(spec_path: str | os.PathLike, *, out: str | os.PathLike | None = None, workers: int = 1,
              storage: str | None = None, resume: bool = False, progress: bool = True) -> Path:
    """Run (or with ``resume`` continue) the sweep of ``spec_path``; returns the sweep folder."""
    from .study import default_storage, open_storage, open_study, repair_interrupted, require_optuna

    spec = load_spec(spec_path)
    metrics = check_spec(spec)
    require_optuna()
    folder = Path(out or spec.out)
    record_file = folder / SWEEP_FILE
    if record_file.is_file() and not resume:
        raise RunFolderError(f"sweep folder {folder} holds a sweep ({SWEEP_FILE}); continue it with "
                             f"--resume, or delete the folder / pass --out NEW_FOLDER to start another.")
    if record_file.is_file() and storage is None:
        storage = json.loads(record_file.read_text(encoding="utf-8"))["storage"]
    storage = storage or default_storage(folder)
    cells = spec.cells()
    folder.mkdir(parents=True, exist_ok=True)
    write_record(folder, spec, storage, cells, metrics)
    store = open_storage(storage)
    studies = {cell.name: open_study(store, spec, cell) for cell in cells}  # created once, before workers
    if resume:
        for cell in cells:
            def recorded(number: int, cell: Cell = cell) -> float | None:
                found = read_trial(folder / "trials" / cell.name / str(number))
                return None if found is None else found["metrics"].get(metrics[cell.name])

            recovered, requeued = repair_interrupted(studies[cell.name], recorded)
            if recovered or requeued:
                _say(f"{cell.name}: {recovered} interrupted trials had finished, {requeued} re-queued")
    total = sum(spec.budget(c) for c in cells) + len(cells) * len(spec.seeds)
    bar = _bar(total, progress)
    failed_workers = _search(folder, workers, studies, bar)
    _final_runs(spec, cells, folder, studies, metrics, workers, bar)
    bar.close()
    from .report import write_report

    write_report(folder)
    if failed_workers:
        raise ConfigError(f"sweep workers {failed_workers} stopped with an error; see "
                          f"{folder / 'logs'} (the report covers the cells that finished).")
    return folder


def _search(folder: Path, workers: int, studies: dict, bar) -> list[int]:
    """Start the workers, print each finished trial above the bar, wait; returns failed worker indices."""
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    procs = []
    for i in range(workers):
        with (logs / f"worker{i}.txt").open("ab") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "umgkit.sweep.worker", str(folder), str(i)],
                                          stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    seen: set[tuple[str, int]] = set()
    try:
        while True:
            running = any(p.poll() is None for p in procs)
            for name, study in studies.items():
                for t in study.get_trials(deepcopy=False):
                    if t.state.name in _FINISHED and not t.user_attrs.get("interrupted") and \
                            (name, t.number) not in seen:
                        seen.add((name, t.number))
                        bar.update(1)
                        bar.write(_trial_line(name, t))
            if not running:
                break
            time.sleep(1.0)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [i for i, p in enumerate(procs) if p.returncode != 0]


def _trial_line(cell: str, t) -> str:
    params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
    if t.state.name == "COMPLETE":
        return f"{cell} #{t.number}: {t.value:.4f}  {params}"
    if t.state.name == "PRUNED":
        return f"{cell} #{t.number}: pruned  {params}"
    error = (t.user_attrs.get("error") or "").strip().splitlines()
    return f"{cell} #{t.number}: FAILED ({error[-1] if error else 'no message'})  {params}"


def _final_runs(spec: SweepSpec, cells: list[Cell], folder: Path, studies: dict, metrics: dict,
                workers: int, bar) -> None:
    """Each cell's best setting once per seed into ``final/<cell>/seed<k>/`` (a finished one is kept)."""
    from .._io import atomic_write_text
    from .worker import ERROR_FILE, log_tail, run_child, trial_command

    jobs = []
    for cell in cells:
        study = studies[cell.name]
        complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if not complete:
            _say(f"{cell.name}: no finished trial; no final runs")
            bar.update(len(spec.seeds))
            continue
        best = study.best_trial
        cell_dir = folder / "final" / cell.name
        cell_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cell_dir / "best.json", json.dumps(
            {"trial": best.number, "value": best.value, "metric": metrics[cell.name], "params": best.params},
            indent=1) + "\n")
        params = [f"{k}={override_text(v)}" for k, v in best.params.items()]
        for seed in spec.seeds:
            jobs.append((cell, cell_dir / f"seed{seed}",
                         [*spec.cell_overrides(cell, final=True), *params, f"seed={seed}"]))

    def run(job) -> str:
        cell, out, overrides = job
        if read_trial(out) is not None:
            return f"{cell.name} {out.name}: done before"
        code, _ = run_child(trial_command(spec, cell.config, out, overrides), out)
        found = read_trial(out)
        if code != 0 or found is None:
            (out / ERROR_FILE).write_text(f"exit code {code}:\n{log_tail(out)}\n", encoding="utf-8")
            return f"{cell.name} {out.name}: FAILED (exit code {code}; see {out / ERROR_FILE})"
        return f"{cell.name} {out.name}: {found['metrics'].get(metrics[cell.name], float('nan')):.4f}"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for line in pool.map(run, jobs):
            bar.update(1)
            bar.write(line)


def _bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="sweep", unit="run", disable=not enabled, file=sys.stderr)


def _say(text: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(text, file=sys.stderr)
