"""``umgkit.plugins`` entry points: the command imports every installed plugin after umgkit's own modules,
so the names a plugin registers work in every command; a broken plugin is one error naming it."""

from __future__ import annotations

import pytest

from umgkit._builtins import PLUGIN_GROUP, load_plugins
from umgkit.cli import main
from umgkit.errors import ConfigError


def _install(site, dist: str, module: str, source: str) -> None:
    """What ``pip install`` leaves for a plugin: the module and a dist-info with its entry point."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{PLUGIN_GROUP}]\n{module} = {module}\n")


PLUGIN = '''
from umgkit.registry import HEADS


@HEADS.register("test_plugin_head", tasks=("classification",))
def build(backbone, num_classes, class_names=None):
    """A head registered by an installed plugin."""
    raise NotImplementedError
'''


def _forget_registrations_afterwards(monkeypatch) -> None:
    """What a plugin registers here is gone after the test (other tests list the heads of a task)."""
    from umgkit.registry import REGISTRIES

    for registry in REGISTRIES.values():
        for attribute, table in vars(registry).items():
            if isinstance(table, dict):
                monkeypatch.setattr(registry, attribute, dict(table))


def test_an_installed_plugin_registers_its_names_for_the_command(tmp_path, monkeypatch, capsys):
    _forget_registrations_afterwards(monkeypatch)
    _install(tmp_path, "test-umgkit-plugin", "test_umgkit_plugin", PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["list", "heads"]) == 0
    listed = capsys.readouterr().out
    assert "test_plugin_head  [classification] A head registered by an installed plugin." in listed
    assert "test_umgkit_plugin" in load_plugins()  # again: imported once, nothing registered twice


def test_a_plugin_that_fails_to_import_is_one_error_naming_it(tmp_path, monkeypatch, capsys):
    _install(tmp_path, "test-broken-plugin", "test_broken_plugin", "import not_a_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    expected = (r"plugin 'test_broken_plugin' \(test_broken_plugin, from test-broken-plugin\) failed to "
                r"import: ModuleNotFoundError")
    with pytest.raises(ConfigError, match=expected) as err:
        load_plugins()
    assert isinstance(err.value.__cause__, ModuleNotFoundError)
    assert main(["list", "tasks"]) == 2
    assert "pip uninstall" in capsys.readouterr().err
