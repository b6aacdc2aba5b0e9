"""Bad input, as a user types it: each case runs the real CLI in its own process and must end with one
message (exit code 2, no traceback) that names the file / key / value and says how to fix it.

The processes run two at a time from one fixture; each case then checks its own output.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from umgkit.cli import main
from umgkit.data.synth import generate_world

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CLS = str(CONFIGS / "demo" / "classification.yaml")
DET = str(CONFIGS / "demo" / "detection.yaml")


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # CLI arguments; "{name}" fields are filled from the fixture's paths
    needles: tuple[str, ...]  # each must appear in stderr (the thing named, the valid choice or fix)


def train(*overrides: str, out: str = "{runs}/{id}", world: str = "{world}/imagefolder") -> tuple[str, ...]:
    return ("train", CLS, f"output_dir={out}", "data.synthetic.out=", f"data.root={world}",
            "train.max_steps=1", "train.progress=false", "data.batch_size=4", *overrides)


CASES = [
    # registry names
    Case("adapter_name", train("model.adapter=lorra"), ("model.adapter", "'lorra'", "did you mean", "lora")),
    Case("head_name", train("model.head=linaer"), ("model.head", "'linaer'", "did you mean", "linear")),
    Case("head_task_mismatch", train("model.head=semantic_fpn"),
         ("model.head", "'semantic_fpn'", "serves task semantic", "'classification'", "linear, text_init")),
    Case("task_name", train("task=classfication"), ("task", "'classfication'", "did you mean",
                                                     "classification")),
    Case("backbone_family", train("model.backbone=umgg:tiny"), ("model.backbone", "umgg:tiny", "umg:")),
    Case("umg_arch", train("model.backbone=umg:tinyy"), ("model.backbone", "tinyy", "did you mean", "tiny")),
    Case("timm_model", train("model.backbone=timm:vit_tinyy_patch16_224"),
         ("model.backbone", "vit_tinyy_patch16_224", "did you mean", "vit_tiny_patch16_224")),
    Case("openclip_model", train("model.backbone=openclip:ViT-B-166"),
         ("model.backbone", "ViT-B-166", "did you mean", "ViT-B-16")),
    Case("method_family_mismatch", train("model.backbone=timm:convnext_atto", "model.adapter=vpt"),
         ("model.adapter", "VPT", "Use lora")),
    Case("hf_folder_missing", train("model.backbone=hf:{files}/no_hf_model"),
         ("model.backbone", "no_hf_model", "does not exist", "save_pretrained")),
    Case("hf_hub_offline", train("model.backbone=hf:umgkit-test/absent"),
         ("model.backbone", "hf:umgkit-test/absent", "HF_HUB_OFFLINE")),
    Case("dataset_format", train("data.format=imagefoldr"), ("data.format", "'imagefoldr'", "did you mean",
                                                            "imagefolder")),
    # component options
    Case("adapter_option", train("model.adapter_options.rnak=4"),
         ("model.adapter_options", "'rnak'", "did you mean", "rank")),
    Case("head_option", train("model.head_options.input_scal=2"),
         ("model.head_options", "'input_scal'", "did you mean", "input_scale")),
    Case("head_option_other_head", train("model.head=text_init", "model.head_options.dropot=0.1"),
         ("model.head_options", "'dropot'", "text_init", "templates")),
    Case("task_option", train("task_options.crop_scal=[1,1]"), ("task_options", "crop_scal", "crop_scale")),
    Case("adapter_rank_zero", train("model.adapter_options.rank=0"),
         ("model.adapter_options", "rank", "> 0")),
    Case("adapter_tower", train("model.adapter_options.tower=both"),
         ("model.adapter_options", "tower", "'vision'")),
    Case("adapter_targets", train("model.adapter_options.target_modules=[]"),
         ("model.adapter_options", "target_modules", "attn.qkv")),
    # values
    Case("batch_negative", train("data.batch_size=-1"), ("data.batch_size", "-1", ">= 1")),
    Case("lr_negative", train("train.lr=-5"), ("train.lr", "-5", "> 0")),
    Case("image_size_zero", train("data.image_size=0"), ("data.image_size", ">= 1")),
    Case("epochs_type", train("train.epochs=abc"), ("train.epochs", "abc", "int")),
    Case("key_typo", train("trian.lr=1"), ("trian", "train")),
    Case("override_syntax", train("train.lr"), ("train.lr", "key.path=value")),
    Case("precision_literal", train("train.mixed_precision=fp8"), ("train.mixed_precision", "fp8", "bf16")),
    Case("predict_batch_zero", ("predict", "{run}", "{world}/imagefolder/val", "--out", "{runs}/{id}",
                                "--batch-size", "0"), ("--batch-size", "0", ">= 1")),
    # config files
    Case("config_missing", ("train", "{files}/nope.yaml"), ("nope.yaml", "does not exist")),
    Case("config_syntax", ("train", "{files}/syntax.yaml"), ("syntax.yaml", "line")),
    Case("config_python_tag", ("train", "{files}/tag.yaml"), ("tag.yaml", "python")),
    Case("config_not_mapping", ("train", "{files}/list.yaml"), ("list.yaml", "mapping")),
    Case("config_base_cycle", ("train", "{files}/cycle_a.yaml"), ("cycle_b.yaml", "cycle")),
    Case("config_base_missing", ("train", "{files}/orphan.yaml"), ("gone.yaml", "does not exist")),
    Case("config_no_task", ("train", "{files}/no_task.yaml"), ("task", "task=")),
    # datasets
    Case("data_root_missing", train(world="{files}/no_world"), ("no_world", "data.root")),
    Case("train_split_empty", train(world="{files}/empty_world"),
         ("empty_world/train", "one sub-folder per class")),
    Case("val_split_empty", train(world="{files}/empty_val_world"), ("empty_val_world", "val", "no samples",
                                                                     "data.val_split=''")),
    Case("val_split_missing", train("data.val_split=nope"), ("imagefolder/nope", "data.val_split")),
    Case("corrupt_image", train(world="{files}/corrupt_world"), ("broken.png", "data.skip_bad")),
    Case("num_classes_mismatch", train("data.num_classes=3"), ("data.num_classes", "3", "8")),
    Case("class_names_missing", train("data.class_names={files}/names.txt"),
         ("names.txt", "data.class_names")),
    Case("coco_json_corrupt", ("train", DET, "output_dir={runs}/{id}", "data.synthetic.out=",
                               "data.root={files}/bad_coco", "train.max_steps=1", "train.progress=false"),
         ("instances_train.json", "JSON")),
    # weights
    Case("weights_missing", train("model.pretrained={files}/none.safetensors"), ("none.safetensors",
                                                                                 "model.pretrained")),
    Case("weights_text", train("model.pretrained={files}/text.safetensors"),
         ("model.pretrained", "text.safetensors", "not a readable safetensors file")),
    Case("weights_pickle", train("model.pretrained={files}/evil.pt"),
         ("model.pretrained", "evil.pt", "never unpickles", ".safetensors")),
    Case("weights_shapes", train("model.pretrained={files}/small.safetensors"),
         ("model.pretrained", "small.safetensors", "shape", "umg architecture")),
    Case("hub_missing", ("eval", "hf-hub:umgkit-test/absent"), ("umgkit-test/absent", "HF_HUB_OFFLINE")),
    # runs and checkpoints
    Case("resume_missing", train("train.resume={files}/no_ckpt"), ("no_ckpt", "does not exist")),
    Case("resume_not_checkpoint", train("train.resume={files}"), ("train.resume", "step_")),
    Case("run_folder_taken", train(out="{files}/taken_run"), ("taken_run", "--resume", "--overwrite")),
    Case("resume_other_batch", train("train.resume=auto", "data.batch_size=2", out="{files}/resumed_run"),
         ("global batch", "data.batch_size")),
    Case("resume_other_model",
         train("model.adapter=adaptformer", "train.resume=auto", out="{files}/resumed_run"),
         ("model.adapter", "adaptformer", "resumed_run/config.yaml --resume")),
    Case("resume_and_overwrite", train("--resume", "--overwrite"), ("--resume", "--overwrite")),
    Case("eval_missing", ("eval", "{files}/no_run"), ("no_run", "does not exist")),
    Case("eval_not_a_run", ("eval", "{world}"), ("{world}", "model.json")),
    Case("eval_damaged_checkpoint", ("eval", "{files}/damaged_run/checkpoints/step_0000001"),
         ("trainable.safetensors",)),
    Case("predict_input_missing", ("predict", "{run}", "{files}/nothing.png", "--out", "{runs}/{id}"),
         ("nothing.png",)),
    Case("predict_empty_classes", ("predict", "{run}", "{world}/imagefolder/val", "--out", "{runs}/{id}",
                                   "--classes", ","), ("--classes", "comma")),
    Case("predict_classes_closed_head", ("predict", "{run}", "{world}/imagefolder/val", "--out",
                                         "{runs}/{id}", "--classes", "cat,dog"), ("linear", "--classes")),
    Case("push_repo_name", ("push", "{run}", "noslash"), ("noslash", "ORG/NAME")),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Write the bad files and a trained run, then run every case's CLI process (two at a time)."""
    tmp = tmp_path_factory.mktemp("cli_errors")
    paths = {"world": tmp / "world", "files": tmp / "files", "runs": tmp / "runs", "run": tmp / "run"}
    generate_world(paths["world"], num=80, size=64, progress=False)
    _write_bad_files(paths["files"], paths["world"])
    assert main([a.format(id="run", **paths) for a in train(out="{run}")]) == 0
    for copy in ("taken_run", "resumed_run", "damaged_run"):  # cases that could change a run get a copy
        shutil.copytree(paths["run"], paths["files"] / copy)
    damaged = paths["files"] / "damaged_run" / "checkpoints" / "step_0000001" / "trainable.safetensors"
    damaged.write_bytes(b"\0" * 7)

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp / "hf_home"))
    env.pop("UMGKIT_DEBUG", None)

    def run(case: Case) -> subprocess.CompletedProcess:
        argv = [a.format(id=case.id, **paths) for a in case.argv]
        return subprocess.run([sys.executable, "-m", "umgkit.cli", *argv], capture_output=True, text=True,
                              env=env, timeout=300)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip((c.id for c in CASES), pool.map(run, CASES), strict=True))
    return results, paths


def _write_bad_files(files: Path, world: Path) -> None:
    files.mkdir(parents=True)
    (files / "syntax.yaml").write_text("task: classification\nmodel: {backbone: umg:tiny\n")
    (files / "tag.yaml").write_text("task: !!python/object/apply:os.system ['true']\n")
    (files / "list.yaml").write_text("- task\n- classification\n")
    (files / "cycle_a.yaml").write_text("_base_: cycle_b.yaml\ntask: classification\n")
    (files / "cycle_b.yaml").write_text("_base_: cycle_a.yaml\n")
    (files / "orphan.yaml").write_text("_base_: gone.yaml\ntask: classification\n")
    (files / "no_task.yaml").write_text("model: {backbone: umg:tiny}\n")
    (files / "empty_world" / "train").mkdir(parents=True)
    (files / "empty_world" / "val").mkdir()
    corrupt = files / "corrupt_world"
    shutil.copytree(world / "imagefolder", corrupt)
    first_class = sorted(p for p in (corrupt / "val").iterdir() if p.is_dir())[0]
    (first_class / "broken.png").write_bytes(b"not a png")  # in val: evaluation reads every image
    empty_val = files / "empty_val_world"
    shutil.copytree(world / "imagefolder", empty_val)
    for image in (empty_val / "val").rglob("*.png"):
        image.unlink()
    bad_coco = files / "bad_coco"
    shutil.copytree(world / "coco", bad_coco)
    (bad_coco / "annotations" / "instances_train.json").write_text('{"images": [')
    (files / "text.safetensors").write_text("these are not weights\n" * 4)
    (files / "evil.pt").write_bytes(pickle.dumps(_Evil()))
    save_file({"visual.patch_embed.weight": torch.zeros(3, 3, 1, 1)}, str(files / "small.safetensors"))


class _Evil:
    """A pickle that would run a command when unpickled without weights_only."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_gets_one_clear_message(outcomes, case):
    results, paths = outcomes
    proc = results[case.id]
    err = proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert "weights_only=False" not in err
    lowered = err.lower()
    for needle in case.needles:
        needle = needle.format(**paths)
        assert needle.lower() in lowered, f"{needle!r} not in:\n{err[-3000:]}"
    message = [line for line in err.splitlines() if line.startswith("umgkit")]
    assert len(message) == 1, err[-3000:]


@pytest.mark.parametrize("case_id", ["head_task_mismatch", "head_name"])
def test_a_config_error_writes_nothing(outcomes, case_id):
    """Stopped when the config is loaded: no run folder, no synthetic world, nothing built."""
    results, paths = outcomes
    assert results[case_id].returncode == 2
    assert not (paths["runs"] / case_id).exists()


def test_every_case_is_distinct():
    assert len({c.id for c in CASES}) == len(CASES) >= 40
