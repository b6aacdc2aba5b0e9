"""Few-shot CLIP heads (tip_adapter, tip_adapter_f, clip_adapter, lp_pp): parameter counts by formula,
reduction to zero-shot, the cache filled from data, saving and reloading, vocabularies, training runs."""

from __future__ import annotations

import json

import pytest
import torch

from umgkit._builtins import import_builtins
from umgkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from umgkit.errors import ModelError
from umgkit.models import build_model, load_model, save_model_folder

NAMES = ["red circle", "blue square", "green triangle"]
FEWSHOT = ("tip_adapter", "tip_adapter_f", "clip_adapter", "lp_pp")
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]  # two prompts keep the text tower's share small


def _cfg(head: str, out=".", **head_options) -> RunConfig:
    import_builtins()
    if head != "linear":
        head_options.setdefault("templates", TEMPLATES)
    return RunConfig(task="classification", output_dir=str(out), seed=0,
                     model=ModelConfig(backbone="umg:tiny", adapter="frozen", head=head,
                                       head_options=head_options))


def _model(head: str, **head_options):
    torch.manual_seed(0)
    return build_model(_cfg(head, **head_options), NAMES).eval()


def _trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _shots(model, per_class: int = 2):
    """``per_class`` random unit features per class (balanced) and their labels."""
    gen = torch.Generator().manual_seed(1)
    dim = model.backbone.embed_dim
    labels = torch.arange(len(NAMES)).repeat_interleave(per_class)
    feats = torch.nn.functional.normalize(torch.randn(len(labels), dim, generator=gen), dim=-1)
    return feats, labels


def _queries(model, n: int = 5):
    gen = torch.Generator().manual_seed(2)
    return torch.nn.functional.normalize(torch.randn(n, model.backbone.embed_dim, generator=gen), dim=-1)


def _zero_shot(model):
    """text_init with the same templates and (fixed) scale as the few-shot head's."""
    scale = float(model.head.log_scale)
    return _model("text_init", logit_scale=scale, learn_scale=False)


# ------------------------------------------------------------------------------------------ counts
def test_parameter_counts_follow_the_formulas():
    dim, classes = _model("linear").backbone.embed_dim, len(NAMES)
    assert _trainable(_model("tip_adapter")) == 0
    tip_f = _model("tip_adapter_f")
    tip_f.head.init_from_features(*_shots(tip_f, per_class=4))
    assert _trainable(tip_f) == 12 * dim  # N x D keys, N = 3 classes x 4 shots
    assert _trainable(_model("clip_adapter")) == 2 * dim * (dim // 4)
    assert _trainable(_model("clip_adapter", reduction=2, on="both")) == 2 * (2 * dim * (dim // 2))
    assert _trainable(_model("lp_pp")) == classes * dim + classes


# ------------------------------------------------------------------------------------------ zero-shot
def test_tip_adapter_with_alpha_zero_is_zero_shot_exactly():
    model = _model("tip_adapter", alpha=0.0)
    model.head.init_from_features(*_shots(model))
    q = _queries(model)
    with torch.no_grad():
        assert torch.equal(model(features=q), _zero_shot(model)(features=q))
        model.head.alpha = 1.0
        assert not torch.equal(model(features=q), _zero_shot(model)(features=q))  # alpha 1: the cache counts


def test_tip_adapter_with_beta_zero_and_balanced_shots_has_zero_shot_probabilities():
    model = _model("tip_adapter", beta=0.0, alpha=3.0)
    model.head.init_from_features(*_shots(model, per_class=3))
    q = _queries(model)
    with torch.no_grad():
        logits, zero = model(features=q), _zero_shot(model)(features=q)
    assert torch.allclose(logits - zero, torch.full_like(zero, 3.0 * 3), atol=1e-5)  # alpha x shots
    assert torch.allclose(logits.softmax(-1), zero.softmax(-1), atol=1e-6, rtol=0)


def test_tip_adapter_cache_logits_match_the_formula():
    model = _model("tip_adapter", alpha=0.7, beta=2.0)
    feats, labels = _shots(model)
    model.head.init_from_features(feats, labels)
    q = _queries(model)
    values = torch.nn.functional.one_hot(labels, len(NAMES)).float()  # L (N, C)
    expected = _zero_shot(model)(features=q) + 0.7 * torch.exp(-2.0 * (1 - q @ feats.t())) @ values
    with torch.no_grad():
        assert torch.allclose(model(features=q), expected, atol=1e-5)


def test_clip_adapter_with_ratio_zero_is_zero_shot_exactly():
    q = None
    for on in ("image", "text", "both"):
        model = _model("clip_adapter", ratio=0.0, on=on)
        q = _queries(model) if q is None else q
        with torch.no_grad():
            assert torch.equal(model(features=q), _zero_shot(model)(features=q)), on


def test_lp_pp_starts_from_the_class_means_and_the_text_rows():
    model = _model("lp_pp")
    feats, labels = _shots(model)
    model.head.init_from_features(feats, labels)
    means = torch.stack([feats[labels == c].mean(0) for c in range(len(NAMES))])
    assert torch.allclose(model.head.weight, torch.nn.functional.normalize(means, dim=-1), atol=1e-6)
    assert torch.equal(model.head.alpha, torch.ones(len(NAMES)))
    q = _queries(model)
    scale = model.head.log_scale.exp()
    expected = scale * (q @ model.head.weight.t() + q @ model.head.text.t())
    with torch.no_grad():
        assert torch.allclose(model(features=q), expected, atol=1e-5)


def test_logit_scale_defaults_to_the_backbones_own():
    model = _model("tip_adapter")
    assert float(model.head.log_scale) == pytest.approx(float(model.backbone.logit_scale))
    assert float(_model("tip_adapter", logit_scale=None).head.log_scale) == pytest.approx(4.605170, abs=1e-6)


# ------------------------------------------------------------------------------------------ save / load
@pytest.mark.parametrize("head", FEWSHOT)
def test_a_saved_model_folder_reloads_with_identical_logits(head, tmp_path):
    model = build_model(_cfg(head, tmp_path / "run"), NAMES)
    if hasattr(model.head, "init_from_features"):
        model.head.init_from_features(*_shots(model))
    with torch.no_grad():
        for p in model.head.parameters():  # as if trained: the reloaded values are not the built ones
            p.add_(0.01 * torch.randn_like(p))
    model.eval()
    save_model_folder(model, tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    q = _queries(model)
    with torch.no_grad():
        assert torch.equal(loaded(features=q), model(features=q))
    if head.startswith("tip"):
        assert loaded.head.num_keys == 6
        assert json.loads((tmp_path / "model" / "model.json").read_text())["classifier"] == "few_shot"


def test_existing_heads_keep_an_unchanged_head_file(tmp_path):
    from safetensors import safe_open

    for head in ("linear", "text_init"):
        save_model_folder(build_model(_cfg(head, tmp_path / head), NAMES), tmp_path / head / "model")
        with safe_open(str(tmp_path / head / "model" / "head.safetensors"), "pt") as fh:
            keys = sorted(fh.keys())
        assert keys == (["head.fc.bias", "head.fc.weight"] if head == "linear"
                        else ["head.logit_scale", "head.weight"])


# ------------------------------------------------------------------------------------------ vocabulary
@pytest.mark.parametrize("head", ["tip_adapter", "tip_adapter_f", "lp_pp"])
def test_heads_fitted_to_their_classes_refuse_other_names(head):
    model = _model(head)
    model.set_class_names(list(NAMES))  # the same names: nothing happens
    for names in (["cat", "dog", "bird"], ["cat", "dog"]):
        with pytest.raises(ModelError, match=f"head '{head}' holds rows fitted to the training images of its "
                                             "own 3 classes"):
            model.set_class_names(names)
    assert model.class_names == NAMES and not model.open_vocabulary


def test_clip_adapter_names_new_classes():
    model = _model("clip_adapter", on="both")
    assert model.open_vocabulary
    model.set_class_names(["cat", "dog", "bird", "fish"])
    with torch.no_grad():
        assert model(features=_queries(model)).shape == (5, 4)
    assert model.class_names == ["cat", "dog", "bird", "fish"]


# ------------------------------------------------------------------------------------------ training runs
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from umgkit.data.synth import generate_world

    out = tmp_path_factory.mktemp("fewshot_world")
    generate_world(out, num=24, size=32, seed=0, progress=False)
    return out / "imagefolder"


def _run_cfg(world, out, head: str, **train) -> RunConfig:
    cfg = _cfg(head, out)
    return RunConfig(task="classification", output_dir=str(out), seed=0, model=cfg.model,
                     data=DataConfig(root=str(world), image_size=32, batch_size=4, eval_batch_size=8,
                                     val_split="train"),
                     train=TrainConfig(progress=False, lr=1e-3, **train),
                     task_options={"cache_dir": str(out.parent / "cache")})


def _val_logits(model, task):
    feats = task.val_dataset.features  # the feature cache of the val split
    with torch.no_grad():
        return model.eval()(features=feats)


def test_training_free_tip_adapter_run_takes_no_step_and_leaves_a_model_folder(world, tmp_path, capsys):
    from umgkit.tasks.run import train_and_save

    cfg = _run_cfg(world, tmp_path / "tip", "tip_adapter", epochs=3)
    task, metrics = train_and_save(cfg)
    assert "nothing trains: the model has no trainable parameter" in capsys.readouterr().err
    assert task.model.head.num_keys == len(task.train_dataset)  # the cache holds every training image
    keys = torch.nn.functional.normalize(task.train_dataset.features, dim=-1)
    assert torch.equal(task.model.head.keys.cpu(), keys)
    assert set(metrics) >= {"top1", "top5"}
    assert not (tmp_path / "tip" / "checkpoints").exists()  # no step, nothing to resume
    info = json.loads((tmp_path / "tip" / "model" / "model.json").read_text())
    assert info["complete"] is True and info["trainable_parameters"] == 0
    loaded = load_model(tmp_path / "tip")
    assert torch.equal(_val_logits(loaded, task), _val_logits(task.model, task))


def test_tip_adapter_f_trains_its_keys_and_its_checkpoint_keeps_the_cache(world, tmp_path):
    from umgkit.tasks.run import train_and_save

    cfg = _run_cfg(world, tmp_path / "tipf", "tip_adapter_f", max_steps=3, save_every=3)
    task, _ = train_and_save(cfg)
    head = task.model.head
    start = torch.nn.functional.normalize(task.train_dataset.features, dim=-1).to(head.keys.device)
    assert head.keys.shape == start.shape and not torch.allclose(head.keys, start)  # the keys moved
    expected = _val_logits(task.model, task)
    for source in (tmp_path / "tipf", tmp_path / "tipf" / "checkpoints" / "step_0000003"):
        assert torch.equal(_val_logits(load_model(source), task), expected), source


def test_without_the_feature_cache_the_cache_comes_from_one_eval_pass_of_the_backbone(world, tmp_path):
    from umgkit.registry import TASKS

    cached = TASKS.build("classification", cfg=_run_cfg(world, tmp_path / "a", "tip_adapter"))
    cfg = _run_cfg(world, tmp_path / "b", "tip_adapter")
    cfg.task_options["cache_features"] = False
    live = TASKS.build("classification", cfg=cfg)
    assert "RandomResizedCrop" in repr(live.train_dataset.transform)  # training still augments
    assert torch.allclose(live.model.head.keys, cached.model.head.keys, atol=1e-6)
    assert torch.equal(live.model.head.labels, cached.model.head.labels)


def test_a_resumed_tip_adapter_f_run_ends_with_the_keys_of_an_uninterrupted_one(world, tmp_path):
    import shutil

    from umgkit.tasks.run import train_and_save

    cfg = _run_cfg(world, tmp_path / "run", "tip_adapter_f", max_steps=4, save_every=2)
    whole = train_and_save(cfg)[0].model.head.keys.detach().cpu().clone()
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step_0000004")
    cfg.train.resume = "auto"
    resumed = train_and_save(cfg)[0].model.head.keys.detach().cpu()
    assert torch.equal(resumed, whole)


def test_head_buffers_are_the_persistent_buffers_only_once_each():
    from torch import nn

    from umgkit._tensors import head_buffers

    shared = nn.Linear(2, 2)
    head = nn.Module()
    head.a, head.b = shared, shared  # one module under two names: its parameters are no buffers
    head.register_buffer("cache", torch.ones(3))
    head.register_buffer("text", torch.ones(2), persistent=False)
    head.c = nn.Module()
    head.c.register_buffer("again", head.cache)  # a buffer under two names is stored once
    model = nn.Module()
    model.head = head
    assert list(head_buffers(model)) == ["head.cache"]


def test_cli_train_of_tip_adapter_then_predict_with_other_names_is_one_error(world, tmp_path, capsys):
    from umgkit.cli import main
    from umgkit.config import save_config

    run = tmp_path / "cli"
    save_config(_run_cfg(world, run, "tip_adapter"), tmp_path / "tip.yaml")
    assert main(["train", str(tmp_path / "tip.yaml")]) == 0
    assert (run / "model" / "head.safetensors").is_file()
    image = next(p for p in sorted(world.rglob("*.png")))
    names = json.loads((run / "model" / "class_names.json").read_text())
    capsys.readouterr()
    assert main(["predict", str(run), str(image), "--out", str(tmp_path / "a")]) == 0
    other = ",".join(f"class {i}" for i in range(len(names)))
    assert main(["predict", str(run), str(image), "--classes", other, "--out", str(tmp_path / "b")]) == 2
    assert "head 'tip_adapter' holds rows fitted to the training images" in capsys.readouterr().err
