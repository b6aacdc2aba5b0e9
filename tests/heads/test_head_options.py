"""Built-in heads: the tasks each one serves, its options dataclass (documented, with the defaults its
constructor has), and the task check when a model is built from a config made in Python."""

import dataclasses
import inspect

import pytest

from umgkit._builtins import import_builtins
from umgkit.config import ConfigError, ModelConfig, RunConfig
from umgkit.config.reference import field_comments
from umgkit.heads import (
    CLIPHead,
    ContrastiveHead,
    LinearHead,
    Mask2FormerHead,
    PixelTextHead,
    RCNNHead,
    SemanticHead,
)
from umgkit.registry import HEADS

import_builtins()

SERVES = {"linear": ("classification",), "text_init": ("classification",), "clip": ("classification",),
          "contrastive": ("retrieval",),
          "tip_adapter": ("classification",), "tip_adapter_f": ("classification",),
          "clip_adapter": ("classification",), "lp_pp": ("classification",),
          "semantic_fpn": ("semantic",), "semantic_uper": ("semantic",), "pixel_text": ("semantic",),
          "mask2former": ("panoptic",), "vitdet_rcnn": ("detection",)}
CONSTRUCTOR = {"linear": LinearHead, "clip": CLIPHead, "contrastive": ContrastiveHead,
               "semantic_fpn": SemanticHead, "semantic_uper": SemanticHead, "pixel_text": PixelTextHead,
               "mask2former": Mask2FormerHead, "vitdet_rcnn": RCNNHead}
# options whose builder resolves the default itself: null = the backbone's own scale (or ln(1/0.07))
RESOLVED_BY_THE_BUILDER = {("contrastive", "logit_scale"), ("clip", "logit_scale")}


def builtin_heads():
    return [n for n in HEADS.names() if HEADS.get(n).__module__.startswith("umgkit.")]


def test_every_builtin_head_declares_its_tasks():
    assert {n: HEADS.tasks(n) for n in builtin_heads()} == SERVES
    builtin = set(builtin_heads())  # other tests register heads of their own in this process
    classification = [n for n in HEADS.serving("classification") if n in builtin]
    assert classification == ["clip", "clip_adapter", "linear", "lp_pp", "text_init", "tip_adapter",
                              "tip_adapter_f"]
    assert [n for n in HEADS.serving("semantic") if n in builtin] == ["pixel_text", "semantic_fpn",
                                                                      "semantic_uper"]
    assert dict(HEADS.describe())["mask2former"].startswith("[panoptic] Mask2Former head")


@pytest.mark.parametrize("name", sorted(SERVES))
def test_options_are_a_documented_dataclass_with_the_constructors_defaults(name):
    options_cls = HEADS.options_class(name)
    fields = dataclasses.fields(options_cls)
    assert fields and set(field_comments(options_cls)) == {f.name for f in fields}
    if name not in CONSTRUCTOR:  # text_init builds its weight from the names; checked by its own tests
        return
    params = inspect.signature(CONSTRUCTOR[name]).parameters
    for f in fields:
        if (name, f.name) in RESOLVED_BY_THE_BUILDER:
            continue
        assert f.name in params, f"{name}: option {f.name} is not a {CONSTRUCTOR[name].__name__} argument"
        assert params[f.name].default == f.default, (name, f.name)


def test_a_mismatched_head_in_a_python_config_fails_when_the_model_is_built():
    from umgkit.models import build_model

    cfg = RunConfig(task="classification", model=ModelConfig(backbone="umg:tiny", head="semantic_fpn"))
    with pytest.raises(ConfigError, match="model.head: head 'semantic_fpn' serves task semantic, not "
                                          "'classification'. Heads for classification: clip, clip_adapter, "
                                          "linear, lp_pp, text_init, tip_adapter, tip_adapter_f;"):
        build_model(cfg, ["a", "b"])
