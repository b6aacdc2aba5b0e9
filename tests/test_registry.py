import pytest

from umgkit.registry import REGISTRIES, Registry


def make_registry() -> Registry:
    reg = Registry("widget", "returns a widget")

    @reg.register("square")
    def square(x: int = 3) -> int:
        """Square a number."""
        return x * x

    @reg.register("scaled:")
    def scaled(name: str, factor: int = 1) -> str:
        """Prefix entry: the rest of the name arrives as ``name``."""
        return name * factor

    return reg


def test_build_passes_keyword_arguments():
    reg = make_registry()
    assert reg.build("square", x=5) == 25
    assert reg.build("square") == 9


def test_prefix_entries_receive_the_rest_of_the_name():
    reg = make_registry()
    assert reg.build("scaled:ab", factor=3) == "ababab"
    assert "scaled:anything" in reg
    assert "nothing:here" not in reg


def test_duplicate_name_raises():
    reg = make_registry()
    with pytest.raises(ValueError, match="already registered"):
        reg.add("square", lambda: 0)


def test_unknown_name_suggests_close_matches():
    reg = make_registry()
    with pytest.raises(KeyError) as info:
        reg.build("sqare")
    message = str(info.value)
    assert "Did you mean 'square'?" in message
    assert "umgkit list widgets" in message


def test_names_and_descriptions_are_sorted():
    reg = make_registry()
    assert reg.names() == ["scaled:", "square"]
    assert reg.describe()[1] == ("square", "Square a number.")
    assert len(reg) == 2


def test_the_registries_exist():
    assert set(REGISTRIES) == {"backbones", "adapters", "heads", "models", "tasks", "datasets"}
