import textwrap

import pytest

from umgkit.config import ConfigError, RunConfig, config_from_dict, load_config, save_config


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def tree(tmp_path):
    write(tmp_path / "base" / "root.yaml", """
        seed: 7
        train: {lr: 0.1, epochs: 3, betas: [0.8, 0.9]}
        data: {batch_size: 16, image_size: 64}
    """)
    write(tmp_path / "base" / "mid.yaml", """
        _base_: root.yaml
        train: {lr: 0.01}
        model: {adapter: lora, adapter_options: {rank: 4}}
    """)
    return write(tmp_path / "exp" / "run.yaml", """
        _base_: [../base/mid.yaml]
        task: classification
        data: {batch_size: 8}
    """)


def test_bases_merge_over_several_levels(tree):
    cfg = load_config(tree)
    assert isinstance(cfg, RunConfig)
    assert cfg.task == "classification"
    assert cfg.seed == 7  # from the deepest base
    assert cfg.train.lr == 0.01  # middle base overrides root
    assert cfg.train.epochs == 3  # sibling key of an override survives
    assert cfg.train.betas == (0.8, 0.9)
    assert cfg.data.batch_size == 8 and cfg.data.image_size == 64
    assert cfg.model.adapter_options == {"rank": 4}


def test_dotted_overrides_parse_values_as_yaml(tree):
    cfg = load_config(tree, ["train.lr=1e-3", "model.adapter_options.rank=16", "train.resume=null",
                             "data.skip_bad=true"])
    assert cfg.train.lr == pytest.approx(1e-3)  # YAML 1.1 reads 1e-3 as text; the schema wants a float
    assert cfg.model.adapter_options == {"rank": 16}
    assert cfg.train.resume is None
    assert cfg.data.skip_bad is True


def test_unknown_key_names_file_key_and_valid_keys(tree, tmp_path):
    bad = write(tmp_path / "exp" / "typo.yaml", """
        _base_: run.yaml
        train: {lrr: 0.5}
    """)
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    message = str(info.value)
    assert str(bad) in message
    assert "'train.lrr'" in message
    assert "lr" in message and "warmup_steps" in message


def test_wrong_type_names_the_file_the_value_came_from(tree, tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tree, ["data.batch_size=many"])
    assert "command line" in str(info.value) and "data.batch_size" in str(info.value)
    write(tmp_path / "base" / "root.yaml", "train: {epochs: 2.5}\n")
    with pytest.raises(ConfigError) as info:
        load_config(tree)
    assert "root.yaml" in str(info.value) and "an integer" in str(info.value)


def test_literal_and_bool_are_checked(tree):
    with pytest.raises(ConfigError, match="'bf16'"):
        load_config(tree, ["train.mixed_precision=bf32"])
    with pytest.raises(ConfigError, match="true or false"):
        load_config(tree, ["data.skip_bad=1"])


def test_missing_required_value(tmp_path):
    path = write(tmp_path / "no_task.yaml", "seed: 1\n")
    with pytest.raises(ConfigError, match="missing required value 'task'"):
        load_config(path)


def test_base_cycle_and_missing_base_are_reported(tmp_path):
    a = write(tmp_path / "a.yaml", "_base_: b.yaml\ntask: x\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(a)
    c = write(tmp_path / "c.yaml", "_base_: nowhere.yaml\ntask: x\n")
    with pytest.raises(ConfigError, match="nowhere.yaml does not exist"):
        load_config(c)


def test_a_key_given_twice_is_refused_with_its_lines(tmp_path):
    path = write(tmp_path / "dup.yaml", "task: classification\ntrain:\n  lr: 1\n  epochs: 2\n  lr: 2\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: key 'lr' is given twice \(lines 3 and 5\)"):
        load_config(path)
    # the same key in two different mappings, and YAML merge keys, are fine
    ok = write(tmp_path / "ok.yaml", "task: classification\nbase: &b {lr: 1}\ntrain:\n  <<: *b\n  epochs: 2\n"
                                     "data: {batch_size: 2}\nmodel: {backbone: 'umg:tiny'}\n")
    with pytest.raises(ConfigError, match="unknown key 'base'"):  # parsed: only the schema objects
        load_config(ok)


def test_an_empty_or_binary_config_file_is_named(tmp_path):
    empty = write(tmp_path / "empty.yaml", "")
    with pytest.raises(ConfigError, match="empty.yaml is empty"):
        load_config(empty)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="binary.yaml is not a text file"):
        load_config(binary)
    write(tmp_path / "empty_base.yaml", "")  # an empty base file adds nothing, and is no error
    child = write(tmp_path / "child.yaml", "_base_: empty_base.yaml\ntask: classification\n")
    assert load_config(child).task == "classification"


def test_yaml_is_never_executed(tmp_path):
    path = write(tmp_path / "evil.yaml", "task: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key.path=value"):
        config_from_dict({"task": "t"}, ["train.lr"])
    with pytest.raises(ConfigError, match="not a mapping"):
        config_from_dict({"task": "t", "seed": 1}, ["seed.x=1"])


def test_saved_config_loads_back_identically(tree, tmp_path):
    cfg = load_config(tree, ["train.lr=2e-4"])
    out = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(out) == cfg
    assert not list(out.parent.glob("*.tmp"))


def test_switching_a_method_on_the_command_line_drops_the_old_methods_options(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(textwrap.dedent("""
        task: semantic
        model: {adapter: lora, adapter_options: {rank: 8, alpha: 16}, head: semantic_fpn,
                head_options: {channels: 64}}
    """))
    switched = load_config(base, ["model.adapter=adaptformer", "model.adapter_options.bottleneck=16"])
    assert (switched.model.adapter, switched.model.adapter_options) == ("adaptformer", {"bottleneck": 16})
    assert switched.model.head_options == {"channels": 64}  # the head was not switched
    same = load_config(base, ["model.adapter=lora", "model.adapter_options.rank=4"])
    assert same.model.adapter_options == {"rank": 4, "alpha": 16}  # same method: options still merge
    head = load_config(base, ["model.head=semantic_uper"])
    assert head.model.head_options == {} and head.model.adapter_options == {"rank": 8, "alpha": 16}


def test_switching_the_backbone_forgets_the_old_backbones_weights_file(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("task: classification\nmodel: {backbone: openclip:ViT-B-16, pretrained: /w/clip.bin}\n")
    assert load_config(base, ["model.backbone=timm:vit_base_patch16_224"]).model.pretrained is None
    both = load_config(base, ["model.pretrained=/w/vit.safetensors",
                              "model.backbone=timm:vit_base_patch16_224"])
    assert both.model.pretrained == "/w/vit.safetensors"  # given with the switch: kept, in any order
    assert load_config(base, ["model.backbone=openclip:ViT-B-16"]).model.pretrained == "/w/clip.bin"


def test_a_child_config_that_switches_a_method_replaces_its_options(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "task: classification\nmodel: {adapter: lora, adapter_options: {rank: 8, alpha: 16}, "
        "head: text_init, head_options: {templates: simple}}\n")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: base.yaml\n"
                     "model: {adapter: ssf, adapter_options: {layers: [0]}, head: linear}\n")
    cfg = load_config(child)
    assert (cfg.model.adapter, cfg.model.adapter_options) == ("ssf", {"layers": [0]})
    assert (cfg.model.head, cfg.model.head_options) == ("linear", {})


@pytest.mark.parametrize(("override", "bound"), [
    ("data.batch_size=-1", ">= 1"), ("data.batch_size=0", ">= 1"), ("data.eval_batch_size=0", ">= 1"),
    ("data.image_size=0", ">= 1"), ("data.num_workers=-2", ">= 0"), ("data.limit=-1", ">= 0"),
    ("data.synthetic.val_fraction=1.5", "< 1.0"), ("train.lr=-5", "> 0.0"), ("train.lr=0", "> 0.0"),
    ("train.grad_accum=0", ">= 1"), ("train.min_lr_ratio=2", "<= 1.0"), ("train.weight_decay=-0.1", ">= 0.0"),
    ("train.epochs=0", ">= 1"), ("train.keep_last=-1", ">= 0"),
])
def test_out_of_range_values_stop_before_anything_is_built(override, bound):
    key, value = override.split("=")
    with pytest.raises(ConfigError) as info:
        load_config("configs/demo/semantic.yaml", [override])
    message = str(info.value)
    assert message.startswith("command line: ") and f"'{key}'" in message and bound in message
    assert f"`{key}=...`" in message  # the fix names the key to set


def test_every_shipped_config_is_in_range():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    # configs/detectron2 holds detectron2's own YAML format (read by its bridge), configs/accelerate
    # Accelerate's launch configs (tests/engine/test_strategy.py), configs/sweeps sweep specs (tests/sweep/)
    configs = sorted(p for p in (root / "configs").rglob("*.yaml")
                     if p.parent.name not in ("detectron2", "accelerate", "sweeps"))
    assert len(configs) > 40
    for path in configs:
        load_config(path)


# -- model.head must serve the task: checked when the config is loaded, before anything is built -------------
HEAD_TASK = {"linear": "classification", "text_init": "classification", "clip": "classification",
             "contrastive": "retrieval",
             "tip_adapter": "classification", "tip_adapter_f": "classification",
             "clip_adapter": "classification", "lp_pp": "classification",
             "semantic_fpn": "semantic", "semantic_uper": "semantic", "pixel_text": "semantic",
             "mask2former": "panoptic", "vitdet_rcnn": "detection"}


@pytest.mark.parametrize("task", sorted(set(HEAD_TASK.values())))
@pytest.mark.parametrize("head", sorted(HEAD_TASK))
def test_a_head_loads_only_with_the_task_it_serves(head, task):
    data = {"task": task, "model": {"head": head}}
    if HEAD_TASK[head] == task:
        assert config_from_dict(data).model.head == head
        return
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    fit = sorted(h for h, t in HEAD_TASK.items() if t == task)
    assert info.value.key == "model.head"
    assert str(info.value) == (
        f"model.head: head '{head}' serves task {HEAD_TASK[head]}, not '{task}'. Heads for {task}: "
        f"{', '.join(fit)}; set model.head to one of them (e.g. model.head={fit[0]}) or leave it empty for "
        "the task's default head.")


def test_the_issue_example_stops_at_load_time():
    """`umgkit train configs/demo/classification.yaml model.head=semantic_fpn` once ended in a
    conv_transpose2d RuntimeError inside the first forward pass."""
    from pathlib import Path

    demo = Path(__file__).resolve().parents[2] / "configs" / "demo" / "classification.yaml"
    with pytest.raises(ConfigError, match=r"head 'semantic_fpn' serves task semantic, not 'classification'\. "
                                          r"Heads for classification: clip, clip_adapter, linear, lp_pp, "
                                          r"text_init, tip_adapter, tip_adapter_f;"):
        load_config(demo, ["model.head=semantic_fpn"])
    assert load_config(demo, ["model.head=text_init"]).model.head == "text_init"


def test_a_task_no_head_declares_is_left_to_the_model_builder():
    # pretrain builds no head; a misspelt task is named (with close matches) by the task builder
    assert config_from_dict({"task": "pretrain", "model": {"head": "linear"}}).model.head == "linear"
    assert config_from_dict({"task": "classfication", "model": {"head": "linear"}}).task == "classfication"


def test_an_unknown_head_is_named_at_load_time():
    with pytest.raises(ConfigError, match=r"model.head: unknown head 'linaer'. Did you mean 'linear'\?"):
        config_from_dict({"task": "classification", "model": {"head": "linaer"}})


def test_a_head_registered_by_user_code_declares_its_tasks(monkeypatch):
    from dataclasses import dataclass

    from umgkit.registry import HEADS

    for table in ("_builders", "_docs", "_tasks", "_options"):  # registrations made here vanish afterwards
        monkeypatch.setattr(HEADS, table, dict(getattr(HEADS, table)))

    @dataclass
    class EdgeOptions:
        width: int = 8  # hidden channels

    @HEADS.register("edge", tasks=("semantic", "panoptic"), options=EdgeOptions)
    def build_edge(backbone, num_classes=None, class_names=None, options=None):
        """Edge-aware segmentation head."""

    assert config_from_dict({"task": "panoptic", "model": {"head": "edge"}}).model.head == "edge"
    with pytest.raises(ConfigError, match=r"serves tasks semantic, panoptic, not 'detection'\. Heads for "
                                          r"detection: vitdet_rcnn;"):
        config_from_dict({"task": "detection", "model": {"head": "edge"}})
    fit = r"Heads for semantic: edge, pixel_text, semantic_fpn, semantic_uper;"
    with pytest.raises(ConfigError, match=fit):
        config_from_dict({"task": "semantic", "model": {"head": "linear"}})
