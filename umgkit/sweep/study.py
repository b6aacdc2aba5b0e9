"""Optuna plumbing: the storage, one study per cell, the sampler and pruner, the shared trial budget.

Storage: by default an Optuna journal file ``SWEEP/optuna.journal``. Every change is one appended line
under a file lock, so a ``kill -9`` loses at most the line being written and several processes on one
machine share it without a server (SQLite's writer lock makes concurrent workers fail with "database is
locked" instead). ``--storage URL`` takes any database URL SQLAlchemy and Optuna support
(``postgresql://user:pass@host/db``, ``mysql+pymysql://...``, ``sqlite:///file.db``) so workers on
several machines share the studies; a plain path is another journal file.

Budget: a cell's ``trials`` count every trial but those a killed sweep interrupted (they are re-asked with
the same parameters). Workers on one machine take a file lock while they count and ask, so N workers stop
at exactly the budget; workers on several machines may each start one trial more in the last round.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .spec import Cell, Space, SweepSpec

__all__ = ["INSTALL_HINT", "JOURNAL_FILE", "require_optuna", "open_storage", "open_study", "suggest",
           "counted_trials", "ask_within_budget", "repair_interrupted", "INTERRUPTED", "default_storage"]

INSTALL_HINT = "umgkit sweep needs Optuna: pip install 'umgkit[sweep]'"
JOURNAL_FILE = "optuna.journal"
INTERRUPTED = "interrupted"  # user attr of a trial a killed sweep left running


def require_optuna():
    """The ``optuna`` module, or a `ConfigError` with the install hint."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep prints its own lines
    return optuna


def open_storage(url: str):
    """An Optuna storage for ``url``: a database URL (``scheme://...``) or a journal file path."""
    optuna = require_optuna()
    if "://" in url:
        return optuna.storages.RDBStorage(url, heartbeat_interval=None)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(url)))


def open_study(storage, spec: SweepSpec, cell: Cell, *, seed: int = 0):
    """Create or load ``cell``'s study with the spec's sampler and pruner (``seed``: this worker's)."""
    optuna = require_optuna()
    if spec.sampler == "grid":
        sampler = _grid_sampler(optuna)({s.key: list(s.choices) for s in cell.spaces}, seed=seed)
    elif spec.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = (optuna.pruners.NopPruner() if spec.pruner == "none"
              else optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    return optuna.create_study(storage=storage, study_name=cell.name, sampler=sampler, pruner=pruner,
                               direction=spec.direction, load_if_exists=True)


def _grid_sampler(optuna):
    """GridSampler without its end-of-grid ``study.stop()``: that call is only allowed inside
    ``study.optimize``, and the workers ask and tell themselves (the budget ends the search)."""

    class GridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            pass

    return GridSampler


def suggest(trial, spaces: tuple[Space, ...]) -> dict[str, Any]:
    """Draw every searched key for ``trial``; returns ``{config.key: value}``."""
    params = {}
    for s in spaces:
        if s.choices is not None:
            params[s.key] = trial.suggest_categorical(s.key, list(s.choices))
        elif s.is_int:
            params[s.key] = trial.suggest_int(s.key, s.low, s.high, log=s.log, step=int(s.step or 1))
        else:
            params[s.key] = trial.suggest_float(s.key, float(s.low), float(s.high), log=s.log, step=s.step)
    return params


def counted_trials(study) -> list:
    """The trials that use the budget: all but those a killed sweep interrupted."""
    return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(INTERRUPTED)]


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ask_within_budget(study, budget: int, lock_file: Path):
    """A new (or re-queued) trial of ``study``, or None once ``budget`` trials exist."""
    with _lock(lock_file):
        if len(counted_trials(study)) >= budget:
            return None
        return study.ask()


def repair_interrupted(study, trial_folder) -> tuple[int, int]:
    """After a killed sweep: a trial left RUNNING whose run wrote ``trial.json`` is told COMPLETE from it
    (by the caller's ``trial_folder(number) -> record or None``); the others are marked failed as
    interrupted and their parameters re-queued. Returns ``(recovered, requeued)``."""
    optuna = require_optuna()
    from optuna.trial import TrialState

    recovered = requeued = 0
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        value = trial_folder(frozen.number)
        if value is not None:
            study.tell(frozen.number, value)
            recovered += 1
            continue
        optuna.trial.Trial(study, frozen._trial_id).set_user_attr(INTERRUPTED, True)
        study.tell(frozen.number, state=TrialState.FAIL)
        study.enqueue_trial(dict(frozen.params), user_attrs={"requeued_from": frozen.number})
        requeued += 1
    return recovered, requeued


def default_storage(folder: str | os.PathLike) -> str:
    return str(Path(folder) / JOURNAL_FILE)
