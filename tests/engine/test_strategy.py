"""What the trainer adapts to an Accelerate strategy: the shipped launch configs, FSDP units, float32
trainables, the DeepSpeed clipping check, the ZeRO-3 merge refusal, and the sharded checkpoint layout
(Accelerate's save_state), exercised on CPU by forcing it (FSDP / DeepSpeed themselves need a GPU)."""

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from _toy_task import make_config, run
from torch import nn

from umgkit.engine import checkpoint, strategy
from umgkit.errors import CheckpointError, ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_accelerate_configs_read_as_their_strategy():
    from accelerate.commands.config.config_args import ClusterConfig

    found = {}
    for name in ("ddp", "fsdp2", "zero2", "zero3"):
        cfg = ClusterConfig.from_yaml_file(str(ROOT / "configs" / "accelerate" / f"{name}.yaml"))
        found[name] = (str(cfg.distributed_type).rsplit(".", 1)[-1], cfg.mixed_precision,
                       (cfg.fsdp_config or {}).get("fsdp_version"),
                       (cfg.deepspeed_config or {}).get("zero_stage"))
    assert found == {"ddp": ("MULTI_GPU", "bf16", None, None), "fsdp2": ("FSDP", "bf16", 2, None),
                     "zero2": ("DEEPSPEED", "bf16", None, 2), "zero3": ("DEEPSPEED", "bf16", None, 3)}


def test_fsdp_units_are_the_repeated_blocks_and_trainables_become_float32():
    from umgkit.adapters import apply_adapter
    from umgkit.backbones import create_backbone

    backbone = create_backbone("umg:tiny")
    apply_adapter(backbone, "lora")
    assert strategy.fsdp_unit_classes(backbone) == ["Block"]
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)).to(torch.bfloat16)
    model[0].requires_grad_(False)
    acc = SimpleNamespace(distributed_type="NO", num_processes=1)
    strategy.prepare_model(model, acc, None)
    assert model[0].weight.dtype == torch.bfloat16 and model[1].weight.dtype == torch.float32


def test_deepspeed_clipping_must_match_train_clip_grad(monkeypatch):
    from accelerate.utils import DistributedType

    ds = SimpleNamespace(deepspeed_plugin=SimpleNamespace(deepspeed_config={"gradient_clipping": 1.0}))
    acc = SimpleNamespace(distributed_type=DistributedType.DEEPSPEED, num_processes=8, state=ds)
    cfg = SimpleNamespace(train=SimpleNamespace(clip_grad=0.5))
    with pytest.raises(ConfigError, match="gradient_clipping: 0.5"):
        strategy.prepare_model(nn.Linear(2, 2), acc, cfg)
    cfg.train.clip_grad = 1.0
    strategy.prepare_model(nn.Linear(2, 2), acc, cfg)


def test_merge_is_refused_under_zero3_only(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    strategy.refuse_merge_under_zero3()
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    with pytest.raises(ConfigError, match="ZeRO-3"):
        strategy.refuse_merge_under_zero3()


def _trainable(trainer) -> dict[str, torch.Tensor]:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_sharded_checkpoints_go_through_accelerate_and_resume_exactly(tmp_path, monkeypatch):
    steps = ["train.max_steps=6", "train.save_every=3", "task_options.dropout=0.1"]
    reference, _ = run(make_config(tmp_path / "ref", steps))
    monkeypatch.setattr(checkpoint, "sharded_state", lambda acc: True)
    out = tmp_path / "sharded"
    run(make_config(out, steps))
    shutil.rmtree(out / "checkpoints" / "step_0000006")  # as if killed after step 5
    saved = out / "checkpoints" / "step_0000003"
    assert (saved / checkpoint.SHARDED_DIR / "model.safetensors").is_file()
    assert not (saved / "optimizer.safetensors").exists() and checkpoint.checkpoint_problem(saved) is None
    resumed, _ = run(make_config(out, steps + ["train.resume=auto"]))
    want, got = _trainable(reference), _trainable(resumed)
    assert set(want) == set(got)
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=0)
    monkeypatch.setattr(checkpoint, "sharded_state", lambda acc: False)
    with pytest.raises(CheckpointError, match="sharded strategy"):
        run(make_config(tmp_path / "again", steps + [f"train.resume={saved}"]))


def test_the_model_folder_under_sharded_parameters_is_rebuilt_from_gathered_tensors(tmp_path, monkeypatch):
    """Forced on CPU: the folder written from a rebuilt model + gathered trainables equals the plain one."""
    from safetensors.torch import load_file

    from umgkit.config import load_config
    from umgkit.tasks.run import train_and_save

    def train(out, sharded):
        monkeypatch.setattr(strategy, "shards_parameters", lambda acc: sharded)
        cfg = load_config(ROOT / "configs" / "demo" / "classification.yaml",
                          [f"output_dir={out}", "train.max_steps=2", "train.progress=false",
                           f"data.synthetic.out={tmp_path / 'world'}", "data.synthetic.num=24",
                           f"data.root={tmp_path / 'world' / 'imagefolder'}", "data.val_split=",
                           "data.synthetic.size=32", "data.image_size=32", "data.batch_size=4"])
        train_and_save(cfg)
        return load_file(str(out / "model" / "head.safetensors"))

    plain, rebuilt = train(tmp_path / "plain", False), train(tmp_path / "rebuilt", True)
    assert set(plain) == set(rebuilt) and plain
    for name in plain:
        torch.testing.assert_close(rebuilt[name], plain[name], atol=0, rtol=0)
