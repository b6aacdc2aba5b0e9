"""Task options: one declaration per task that validates ``task_options`` and documents itself.

Each task module declares ``OPTIONS = {"name": Option(default, "meaning"), ...}`` next to its code and
calls ``parse_options("<task>", OPTIONS, cfg.task_options)``. The generated config reference reads the
same declarations, so the documented defaults cannot drift from the ones the task uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .validate import ConfigError

__all__ = ["Option", "parse_options"]


@dataclass(frozen=True)
class Option:
    default: Any
    help: str  # one line: what the option changes and the accepted values


def parse_options(task: str, declared: Mapping[str, Option],
                  given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Declared defaults overlaid with ``given``; an undeclared key raises `ConfigError` naming it."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ConfigError(f"task '{task}': unknown task_options {unknown}; valid: {sorted(declared)} "
                          f"(see docs/config_reference.md).")
    return {name: given.get(name, option.default) for name, option in declared.items()}
