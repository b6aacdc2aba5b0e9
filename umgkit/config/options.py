"""Task options: one declaration per task that validates ``task_options`` and documents itself.

Each task module declares ``OPTIONS = {"name": Option(default, "meaning"), ...}`` next to its code and
calls ``parse_options("<task>", OPTIONS, cfg.task_options)``. The generated config reference reads the
same declarations, so the documented defaults cannot drift from the ones the task uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import close_matches
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
        hints = [f"'{k}'" + (f" (did you mean '{m[0]}'?)" if (m := close_matches(k, declared, n=1)) else "")
                 for k in unknown]
        raise ConfigError(f"unknown option(s) for task '{task}': {', '.join(hints)}. Valid options: "
                          f"{', '.join(sorted(declared))}; see docs/config_reference.md.", key="task_options")
    return {name: given.get(name, option.default) for name, option in declared.items()}
