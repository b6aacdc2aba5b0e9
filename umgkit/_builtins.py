"""Import the modules whose decorators fill the registries: umgkit's own, then the installed plugins.

Kept out of ``umgkit/__init__`` so ``import umgkit`` stays cheap; the CLI and `create_*` factories
call `import_builtins()` before looking a name up. A plugin is a module of another installed package,
declared as an entry point in the group ``umgkit.plugins`` (docs/extending.md): the ``umgkit`` command then
knows the backbones, adapters, heads and tasks it registers, in every command.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from .errors import ConfigError

__all__ = ["PLUGIN_GROUP", "import_builtins", "load_plugins"]

BUILTIN_MODULES = ("umgkit.data", "umgkit.backbones", "umgkit.adapters", "umgkit.heads", "umgkit.models",
                   "umgkit.tasks",
                   "umgkit.pretrain")
PLUGIN_GROUP = "umgkit.plugins"


def import_builtins() -> None:
    """umgkit's own registering modules, then every plugin (`load_plugins`)."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    load_plugins()


def load_plugins() -> list[str]:
    """Import the module of every ``umgkit.plugins`` entry point (a module is imported once per process, so
    calling this again registers nothing twice); returns the entry points' names.

    A plugin that fails to import is one error naming it and its package, with the import error as cause.
    """
    names = []
    for point in sorted(entry_points(group=PLUGIN_GROUP), key=lambda p: p.name):
        try:
            point.load()
        except Exception as err:  # any failure inside a user's module: name the plugin, keep the cause
            package = point.dist.name if point.dist is not None else "an unknown package"
            raise ConfigError(f"the umgkit plugin {point.name!r} ({point.value}, from {package}) failed to "
                              f"import: {type(err).__name__}: {err}. Fix the module, or uninstall {package} "
                              "(pip uninstall) to run umgkit without it.") from err
        names.append(point.name)
    return names
