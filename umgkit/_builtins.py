"""Import the modules whose decorators fill the registries.

Kept out of ``umgkit/__init__`` so ``import umgkit`` stays cheap; the CLI and `create_*` factories
call `import_builtins()` before looking a name up.
"""

from __future__ import annotations

import importlib

__all__ = ["import_builtins"]

BUILTIN_MODULES = ("umgkit.data", "umgkit.backbones", "umgkit.adapters", "umgkit.heads", "umgkit.models",
                   "umgkit.tasks",
                   "umgkit.pretrain")


def import_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
