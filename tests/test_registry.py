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


# -- heads: the tasks each one serves and its options dataclass ----------------------------------------------
def make_heads():
    from dataclasses import dataclass

    from umgkit.errors import ConfigError
    from umgkit.registry import HeadRegistry

    heads = HeadRegistry("head", "returns a head", key="model.head", options_key="model.head_options",
                         errors_key="model.head_options")

    @dataclass
    class ScaleOptions:
        factor: int = 2  # multiplies num_classes

        def __post_init__(self):
            if self.factor < 1:
                raise ConfigError(f"factor={self.factor} must be >= 1.")

    @heads.register("scaled", tasks=("classification",), options=ScaleOptions)
    def scaled(num_classes: int, options: ScaleOptions) -> tuple:
        """Scaled class count."""
        return num_classes * options.factor, options

    @heads.register("plain", tasks=("semantic", "panoptic"), options=None)
    def plain(**supplied) -> dict:
        """Takes no options."""
        return supplied

    return heads, ScaleOptions


def test_head_options_become_the_dataclass_the_builder_receives():
    heads, options_cls = make_heads()
    value, options = heads.create("scaled", {"factor": 3}, num_classes=4)
    assert value == 12 and options == options_cls(factor=3)
    assert heads.create("scaled", None, num_classes=4)[0] == 8  # the dataclass defaults
    assert heads.create("plain", {}, num_classes=4) == {"num_classes": 4}  # no options argument at all


def test_head_option_errors_name_the_key_and_the_valid_options():
    from umgkit.errors import ConfigError

    heads, _ = make_heads()
    with pytest.raises(ConfigError) as info:
        heads.create("scaled", {"factr": 3}, num_classes=4)
    assert info.value.key == "model.head_options"
    expected = "unknown option(s) for head 'scaled': 'factr' (did you mean 'factor'?). Valid options: factor;"
    assert expected in str(info.value)
    with pytest.raises(ConfigError, match="model.head_options: factor=0 must be >= 1"):
        heads.create("scaled", {"factor": 0}, num_classes=4)
    with pytest.raises(ConfigError, match="for head 'plain': 'width'. Valid options: [(]none[)]"):
        heads.create("plain", {"width": 3})


def test_heads_declare_the_tasks_they_serve():
    from umgkit.errors import ConfigError

    heads, _ = make_heads()
    assert heads.tasks("plain") == ("semantic", "panoptic")
    assert heads.serving("panoptic") == ["plain"] and heads.serving("detection") == []
    assert heads.describe() == [("plain", "[semantic, panoptic] Takes no options."),
                                ("scaled", "[classification] Scaled class count.")]
    with pytest.raises(ConfigError) as info:
        heads.create("scaled", {}, task="semantic", num_classes=4)
    assert str(info.value) == (
        "model.head: head 'scaled' serves task classification, not 'semantic'. Heads for semantic: plain; "
        "set model.head to one of them (e.g. model.head=plain) or leave it empty for the task's "
        "default head.")
    with pytest.raises(ConfigError, match="Heads for detection: [(]none[)]; leave model.head empty"):
        heads.check_task("plain", "detection")
    with pytest.raises(KeyError, match="model.head: unknown head 'scaeld'. Did you mean 'scaled'"):
        heads.check_task("scaeld", "classification")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({}, "declare the tasks it serves"),
    ({"tasks": ()}, "declare the tasks it serves"),
    ({"tasks": ("semantic",), "options": dict}, "options must be a dataclass"),
])
def test_a_head_registration_without_tasks_or_with_a_bad_options_class_raises(kwargs, match):
    heads, _ = make_heads()
    with pytest.raises(ValueError, match=match):
        heads.add("other", lambda **kw: kw, **kwargs)
    assert "other" not in heads


def test_a_single_task_name_is_one_task():
    heads, _ = make_heads()
    heads.add("single", lambda **kw: kw, tasks="detection")
    assert heads.tasks("single") == ("detection",)
