"""The error family for user mistakes: the CLI prints one of these as one message and exits 2.

Every message names the thing (file, config key, value), what was expected, and the fix. Anything else
that escapes is a bug in umgkit and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Iterator

__all__ = ["UmgkitError", "ConfigError", "UnknownNameError", "DatasetError", "ModelError", "WeightsError",
           "CheckpointError", "RunFolderError", "at_key", "close_matches", "unknown_name"]


class UmgkitError(Exception):
    """A mistake the user can fix (config, data, weights, model folder, CLI input); the message says how.

    ``key`` is the config key the mistake sits under once one is known (see `at_key`).
    """

    key: str | None = None

    def __init__(self, message: str = "", *, key: str | None = None) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key

    def __str__(self) -> str:  # KeyError subclasses would otherwise print their message in quotes
        return str(self.args[0]) if self.args else ""


class ConfigError(UmgkitError, ValueError):
    """A config file, override or component option that does not fit what it configures."""


class UnknownNameError(ConfigError, KeyError):
    """A registry name (backbone, adapter, head, task, dataset, architecture) that does not exist."""


class DatasetError(UmgkitError, ValueError):
    """A dataset that cannot be built as asked (wrong layout, class count, option, empty split)."""


class ModelError(UmgkitError, ValueError):
    """A model folder, run or checkpoint that cannot be loaded as asked, or a class list that does not fit."""


class WeightsError(UmgkitError, ValueError):
    """A weights file that is missing, unreadable, unsafe or does not fit the architecture."""


class CheckpointError(UmgkitError, ValueError):
    """A training checkpoint that cannot be resumed from."""


class RunFolderError(UmgkitError):
    """An output folder that holds another run's results."""


@contextlib.contextmanager
def at_key(key: str, *types: type[UmgkitError]) -> Iterator[None]:
    """Prefix errors of ``types`` (default: `ConfigError`) raised inside with the config ``key``.

    Components (adapters, heads, weights readers) do not know where their options came from; the code
    that passes ``cfg.model.adapter_options`` does, so it names the key once here. An error that already
    carries a key keeps it.
    """
    caught = types or (ConfigError,)
    try:
        yield
    except caught as err:
        if err.key is None:
            err.key = key
            err.args = (f"{key}: {err}", *err.args[1:])
        raise


def close_matches(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` of ``choices`` spelled like ``word`` (case-insensitive), closest first."""
    choices = list(choices)
    by_lower = {c.lower(): c for c in choices}
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=n, cutoff=0.6)
    return [by_lower[c] for c in found]


def unknown_name(kind: str, name: str, choices: Iterable[str], listing: str) -> UnknownNameError:
    """The error for a mistyped name: the name, close matches, and where the full list is."""
    close = close_matches(name, choices)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return UnknownNameError(f"unknown {kind} '{name}'.{hint} {listing}")
