"""The committed docs/config_reference.md is exactly what the generator writes from the code."""

import dataclasses
from pathlib import Path

import pytest

from umgkit.config import RunConfig
from umgkit.config.reference import (
    COMMAND,
    ReferenceDocError,
    _head_section,
    _task_section,
    config_reference,
    field_comments,
)

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "config_reference.md"


def test_committed_reference_matches_the_schemas():
    text = config_reference()
    assert REFERENCE.is_file(), f"{REFERENCE} is missing; create it with `{COMMAND}`."
    assert REFERENCE.read_text(encoding="utf-8") == text, (
        f"docs/config_reference.md is out of date with the schemas / task OPTIONS; run `{COMMAND}`.")


def test_every_run_config_key_is_documented():
    text = config_reference()

    def keys(cls, prefix=""):
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default):
                yield from keys(type(default), f"{prefix}{f.name}.")
            else:
                yield f"{prefix}{f.name}"

    found = list(keys(RunConfig))
    assert len(found) > 30
    for key in found:
        assert f"| `{key}` |" in text, key
    assert "| `label_smoothing` | `0.0` |" in text  # task OPTIONS rows carry their defaults
    assert "| `rank` | `int` | `8` |" in text  # adapter options come from the options dataclass
    # head options too, with the tasks each head serves
    assert "| `channels` | `int` | `128` | channels of the decoder (FPN / UperNet) |" in text
    assert ("### `semantic_uper`\n\nUperNet (PPM + FPN, concatenated at stride 4) on a learned simple "
            "feature pyramid.\n\nServes: `semantic`.\n") in text
    assert "| `anchor_sizes` | `tuple[int, ...]` | `[32, 64, 128, 256, 512]` |" in text  # from a base class


def test_field_comments_reads_inherited_fields():
    from umgkit.adapters.lora_qv import LoraQVConfig

    comments = field_comments(LoraQVConfig)
    assert comments["rank"].startswith("r of each")
    assert "which block lists" in comments["tower"]  # declared on the base class ScopeOptions


def test_task_without_options_fails_loudly():
    def build(cfg):
        """A task whose module declares no OPTIONS."""

    build.__module__ = "umgkit.registry"  # a real umgkit module without OPTIONS
    with pytest.raises(ReferenceDocError, match="declares no module-level OPTIONS"):
        _task_section("nameless", build)


def test_head_option_without_a_comment_fails_loudly():
    from umgkit.registry import HeadRegistry

    @dataclasses.dataclass
    class Undocumented:
        width: int = 8

    heads = HeadRegistry("head", "returns a head")
    heads.add("bare", lambda **kw: kw, tasks=("semantic",), options=Undocumented)
    with pytest.raises(ReferenceDocError, match=r"head 'bare': .*Undocumented.width has no `# comment`"):
        _head_section("bare", heads)
