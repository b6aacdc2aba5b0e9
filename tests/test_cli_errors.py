"""Bad input, as a user types it, for every command: each case runs the real CLI (`umgkit.cli.main`) and
must end with one message (exit code 2, no traceback) that names the file / key / value and says how to
fix it, and must leave the user's folders as they were (checksums before and after) and no half-written
output behind.

One fixture runs every case: in this process (starting an interpreter and torch per case cost minutes),
except those marked ``process=True``, which get their own process (a server that could start and block, or
settings that libraries read once on import); each case then checks its own output.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from umgkit.cli import main
from umgkit.data.synth import generate_world

pytestmark = pytest.mark.slow  # about a minute: a trained run, then 110+ commands

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CLS = str(CONFIGS / "demo" / "classification.yaml")
DET = str(CONFIGS / "demo" / "detection.yaml")
PRE = str(CONFIGS / "demo" / "pretrain_tiny.yaml")


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # CLI arguments; "{name}" fields are filled from the fixture's paths
    needles: tuple[str, ...]  # each must appear in stderr (the thing named, the valid choice or fix)
    untouched: tuple[str, ...] = ()  # folders the case could write into: same checksums afterwards
    absent: tuple[str, ...] = ()  # paths the failed command must not leave behind
    not_in: tuple[str, ...] = ()  # advice that does not apply to this command
    env: tuple[tuple[str, str], ...] = ()  # environment changes for this case (with process=True)
    process: bool = False  # run in its own process (a server that might start, hub settings read on import)


def train(*overrides: str, out: str = "{runs}/{id}", world: str = "{world}/imagefolder") -> tuple[str, ...]:
    return ("train", CLS, f"output_dir={out}", "data.synthetic.out=", f"data.root={world}",
            "train.max_steps=1", "train.progress=false", "data.batch_size=4", *overrides)


def predict(*inputs: str, model: str = "{run}", out: str = "{runs}/{id}") -> tuple[str, ...]:
    return ("predict", model, *(inputs or ("{world}/imagefolder/val",)), "--out", out)


def pretrain(*overrides: str) -> tuple[str, ...]:
    return ("pretrain", PRE, "output_dir={runs}/{id}", "data.synthetic.out=", "data.root={world}/manifest",
            "train.max_steps=1", "train.progress=false", "data.batch_size=4", "data.val_split=",
            "task_options.zeroshot=none", *overrides)


ONLINE_WITHOUT_TOKEN = (("HF_HUB_OFFLINE", ""), ("HF_TOKEN", ""))
BAD_IMAGES = ("{files}/bad/corrupt.png", "{files}/bad/zero.png", "{files}/bad/truncated.png",
              "{files}/bad/notes.txt")


CASES = [
    # registry names
    Case("adapter_name", train("model.adapter=lorra"), ("model.adapter", "'lorra'", "did you mean", "lora")),
    Case("head_name", train("model.head=linaer"), ("model.head", "'linaer'", "did you mean", "linear")),
    Case("head_task_mismatch", train("model.head=semantic_fpn"),
         ("model.head", "'semantic_fpn'", "serves task semantic", "'classification'",
          "clip, clip_adapter, linear, lp_pp, text_init, tip_adapter, tip_adapter_f")),
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
         ("model.backbone", "hf:umgkit-test/absent", "HF_HUB_OFFLINE"), process=True),
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
    Case("hub_missing", ("eval", "hf-hub:umgkit-test/absent"), ("umgkit-test/absent", "HF_HUB_OFFLINE"),
         process=True),
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

CASES += [
    # train: config files and the output folder
    Case("config_duplicate_key", ("train", "{files}/dup.yaml"),
         ("dup.yaml", "'lr'", "twice", "lines 2 and 3")),
    Case("config_binary", ("train", "{files}/binary.yaml"), ("binary.yaml", "not a text file")),
    Case("config_empty", ("train", "{files}/empty.yaml"), ("empty.yaml", "is empty")),
    Case("train_out_below_file", train(out="{files}/a_file/run"), ("output_dir", "a_file", "is a file"),
         untouched=("{files}/a_file",)),
    Case("resume_damaged_checkpoint",
         train("train.resume={files}/damaged_run/checkpoints/step_0000001"),
         ("step_0000001", "trainable.safetensors", "checksum"), untouched=("{files}/damaged_run",)),
    Case("resume_auto_all_damaged", train("train.resume=auto", out="{files}/damaged_run"),
         ("damaged_run", "no intact checkpoint", "--overwrite"), untouched=("{files}/damaged_run",)),
    # eval: model folders that lost or changed a file
    Case("eval_model_no_head", ("eval", "{files}/model_no_head"), ("model_no_head/head.safetensors",
                                                                   "does not exist", "copy it again")),
    Case("eval_model_no_config", ("eval", "{files}/model_no_config"),
         ("model_no_config/config.yaml", "missing", "copy the folder again")),
    Case("eval_model_json_edited", ("eval", "{files}/model_task_edited"),
         ("model_task_edited/model.json", "'semantic'", "config.yaml", "edited")),
    # predict: unreadable inputs, model folders, options
    Case("predict_corrupt", predict("{files}/bad/corrupt.png"), ("corrupt.png", "--skip-bad"),
         not_in=("data.skip_bad",)),
    Case("predict_zero_byte", predict("{files}/bad/zero.png"), ("zero.png", "--skip-bad"),
         not_in=("data.skip_bad",)),
    Case("predict_truncated", predict("{files}/bad/truncated.png"),
         ("truncated.png", "truncated", "--skip-bad"), not_in=("data.skip_bad",)),
    Case("predict_not_an_image", predict("{files}/bad/notes.txt"), ("notes.txt", "--skip-bad"),
         not_in=("data.skip_bad",)),
    Case("predict_skip_bad_all_bad", (*predict(*BAD_IMAGES), "--skip-bad"),
         ("no image could be read", "all 4 inputs", "corrupt.png"), absent=("{runs}/{id}",),
         not_in=("data.skip_bad",)),
    Case("predict_model_no_head", predict(model="{files}/model_no_head"),
         ("model_no_head/head.safetensors",)),
    Case("predict_model_no_config", predict(model="{files}/model_no_config"),
         ("model_no_config/config.yaml", "missing")),
    Case("predict_model_json_edited", predict(model="{files}/model_task_edited"),
         ("model_task_edited/model.json", "task", "'semantic'", "edited")),
    Case("predict_model_no_class_names", predict(model="{files}/model_no_class_names"),
         ("model_no_class_names/class_names.json", "missing")),
    Case("predict_adapter_truncated", predict(model="{files}/model_adapter_truncated"),
         ("adapter/adapter_model.safetensors", "not a readable safetensors file", "copy it again")),
    Case("predict_hub_offline", predict(model="hf-hub:umgkit-test/absent"),
         ("hf-hub:umgkit-test/absent", "HF_HUB_OFFLINE")),
    Case("predict_device", (*predict(), "--device", "warp9"), ("warp9", "--device", "cpu")),
    Case("predict_out_below_file", predict(out="{files}/a_file/preds"), ("--out", "a_file", "is a file"),
         untouched=("{files}/a_file",)),
    Case("predict_out_is_file", predict(out="{files}/a_file"), ("--out", "a_file", "is a file"),
         untouched=("{files}/a_file",)),
    Case("predict_classes_file_empty", (*predict(), "--classes-file", "{files}/empty_names.txt"),
         ("--classes-file", "empty_names.txt", "is empty")),
    Case("predict_classes_file_folder", (*predict(), "--classes-file", "{files}"),
         ("--classes-file", "is a folder")),
    # export
    Case("export_into_own_model", ("export", "{files}/export_run", "--out", "{files}/export_run/model"),
         ("export_run/model", "the source being exported", "--out"), untouched=("{files}/export_run",)),
    Case("export_merge_into_own_model",
         ("export", "{files}/export_run", "--out", "{files}/export_run/model", "--merge"),
         ("export_run/model", "the source being exported"), untouched=("{files}/export_run",)),
    Case("export_inside_source", ("export", "{files}/export_run", "--out", "{files}/export_run/exported"),
         ("export_run/exported", "inside"), untouched=("{files}/export_run",),
         absent=("{files}/export_run/exported",)),
    Case("export_not_a_run", ("export", "{world}", "--out", "{runs}/{id}"), ("{world}", "model.json"),
         absent=("{runs}/{id}",)),
    Case("export_out_not_empty", ("export", "{run}", "--out", "{files}/full_folder"),
         ("full_folder", "already holds files", "keep.txt"), untouched=("{files}/full_folder",)),
    Case("export_out_below_file", ("export", "{run}", "--out", "{files}/a_file/exported"),
         ("a_file", "is a file"), untouched=("{files}/a_file",)),
    Case("export_hub_offline", ("export", "hf-hub:umgkit-test/absent", "--out", "{runs}/{id}"),
         ("hf-hub:umgkit-test/absent", "HF_HUB_OFFLINE"), absent=("{runs}/{id}",)),
    # push (no request leaves the machine)
    Case("push_offline", ("push", "{run}", "umgkit-test/model"), ("umgkit-test/model", "HF_HUB_OFFLINE")),
    Case("push_no_token", ("push", "{run}", "umgkit-test/model"), ("no Hugging Face token", "hf auth login"),
         env=ONLINE_WITHOUT_TOKEN, process=True),
    # serve (checked before the model loads and before Gradio binds)
    Case("serve_port_too_large", ("serve", "{run}", "--port", "70000"), ("--port", "70000", "0-65535"),
         process=True),
    Case("serve_port_negative", ("serve", "{run}", "--port", "-1"), ("--port", "-1", "0-65535"),
         process=True),
    Case("serve_port_in_use", ("serve", "{run}", "--port", "{port}"), ("port {port}", "already in use",
                                                                       "--port"), process=True),
    Case("serve_host_unbindable", ("serve", "{run}", "--host", "192.0.2.1"), ("192.0.2.1", "cannot be bound",
                                                                               "--host"), process=True),
    # data synth
    Case("synth_num_zero", ("data", "synth", "--out", "{runs}/{id}", "--num", "0"), ("--num", "0"),
         absent=("{runs}/{id}",)),
    Case("synth_size_negative", ("data", "synth", "--out", "{runs}/{id}", "--size", "-5"),
         ("--size", "-5", "32"), absent=("{runs}/{id}",)),
    Case("synth_val_fraction", ("data", "synth", "--out", "{runs}/{id}", "--val-fraction", "1.5"),
         ("--val-fraction", "1.5", "[0, 1)"), absent=("{runs}/{id}",)),
    Case("synth_out_not_empty", ("data", "synth", "--out", "{files}/full_folder", "--num", "4"),
         ("full_folder", "keep.txt", "empty or new folder"), untouched=("{files}/full_folder",)),
    Case("synth_out_below_file", ("data", "synth", "--out", "{files}/a_file/world", "--num", "4"),
         ("--out", "a_file", "is a file"), untouched=("{files}/a_file",)),
    # data shards
    Case("shards_manifest_missing", ("data", "shards", "{files}/none.jsonl", "--out", "{runs}/{id}"),
         ("none.jsonl", "does not exist"), absent=("{runs}/{id}",)),
    Case("shards_image_as_manifest", ("data", "shards", "{files}/bad/truncated.png", "--out", "{runs}/{id}"),
         ("truncated.png", "not a JSONL manifest"), absent=("{runs}/{id}",)),
    Case("shards_malformed_line",
         ("data", "shards", "{files}/shards/malformed.jsonl", "--out", "{runs}/{id}", "--workers", "1"),
         ("malformed.jsonl:3", "fix or remove that line"), absent=("{runs}/{id}",),
         not_in=("data.skip_bad",)),
    Case("shards_missing_image",
         ("data", "shards", "{files}/shards/missing_image.jsonl", "--out", "{runs}/{id}"),
         ("missing_image.jsonl:2", "gone.png", "does not exist"), absent=("{runs}/{id}",),
         not_in=("data.skip_bad",), process=True),
    Case("shards_record_without_image",
         ("data", "shards", "{files}/shards/no_image.jsonl", "--out", "{runs}/{id}", "--workers", "1"),
         ("no_image.jsonl:1", "'image'"), absent=("{runs}/{id}",), not_in=("data.skip_bad",)),
    Case("shards_workers_negative",
         ("data", "shards", "{world}/manifest/train.jsonl", "--out", "{runs}/{id}", "--workers", "-3"),
         ("--workers", "-3", ">= 1"), absent=("{runs}/{id}",)),
    Case("shards_out_below_file",
         ("data", "shards", "{world}/manifest/train.jsonl", "--out", "{files}/a_file/shards"),
         ("--out", "a_file", "is a file"), untouched=("{files}/a_file",)),
    # pretrain
    Case("pretrain_keep_ratio", pretrain("task_options.keep_ratio=1.5"),
         ("task_options.keep_ratio", "1.5", "(0, 1]")),
    Case("pretrain_manifest_missing", pretrain("data.root={files}/no_manifest"),
         ("no_manifest/train.jsonl", "data.root")),
    Case("pretrain_manifest_malformed", pretrain("data.root={files}/bad_manifest"),
         ("bad_manifest/train.jsonl:", "'image'", "data.skip_bad")),
    # demo and docs
    Case("demo_unknown_stage", ("demo", "--only", "nope", "--out", "{runs}/{id}"),
         ("'nope'", "classification", "detection"), absent=("{runs}/{id}",)),
    Case("docs_out_below_file", ("docs", "config-reference", "--out", "{files}/a_file/reference.md"),
         ("a_file", "is a file"), untouched=("{files}/a_file",)),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Write the bad files and a trained run, then run every case's CLI process (two at a time); the
    folders cases could change are checksummed before the processes start."""
    tmp = tmp_path_factory.mktemp("cli_errors")
    paths = {"world": tmp / "world", "files": tmp / "files", "runs": tmp / "runs", "run": tmp / "run"}
    generate_world(paths["world"], num=80, size=64, progress=False)
    _write_bad_files(paths["files"], paths["world"])
    assert main([a.format(id="run", **paths) for a in train(out="{run}")]) == 0
    for copy in ("taken_run", "resumed_run", "damaged_run", "export_run"):  # cases that could change a run
        shutil.copytree(paths["run"], paths["files"] / copy)
    damaged = paths["files"] / "damaged_run" / "checkpoints" / "step_0000001" / "trainable.safetensors"
    damaged.write_bytes(b"\0" * 7)
    _write_damaged_models(paths["files"], paths["run"] / "model")

    busy = socket.socket()  # a port in use, for serve
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    paths["port"] = busy.getsockname()[1]
    fields = {"id": "", **paths}
    watched = {f.format(**fields) for c in CASES for f in c.untouched}
    watched |= {str(paths["run"]), str(paths["world"])}
    before = {folder: _digest(Path(folder)) for folder in watched}

    base_env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp / "hf_home"))
    base_env.pop("UMGKIT_DEBUG", None)

    def run(case: Case) -> subprocess.CompletedProcess:
        argv = [a.format(id=case.id, **paths) for a in case.argv]
        env = {**base_env, **dict(case.env)}
        return subprocess.run([sys.executable, "-m", "umgkit.cli", *argv], capture_output=True, text=True,
                              env=env, timeout=300)

    results = {}
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:  # own processes, beside the in-process cases
            pending = {c.id: pool.submit(run, c) for c in CASES if c.process}
            with _environment({"HF_HUB_OFFLINE": "1", "UMGKIT_DEBUG": None}):
                for case in CASES:
                    if not case.process:
                        results[case.id] = _run_in_process([a.format(id=case.id, **paths) for a in case.argv])
            results.update({name: future.result() for name, future in pending.items()})
    finally:
        busy.close()
    return results, paths, before


def _run_in_process(argv: list[str]) -> subprocess.CompletedProcess:
    """``umgkit ARGV`` in this process (no interpreter start per case): its exit code and stderr, where an
    exception that escapes `main` is printed as the traceback a user would see."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code if isinstance(exit_.code, int) else 1
        except Exception:
            traceback.print_exc()
            code = 1
    return subprocess.CompletedProcess(argv, code, "", err.getvalue())


@contextlib.contextmanager
def _environment(changes: dict[str, str | None]):
    saved = {k: os.environ.get(k) for k in changes}
    try:
        for key, value in changes.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def _digest(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` (and of a plain file itself), by relative path."""
    if folder.is_file():
        return {".": hashlib.sha256(folder.read_bytes()).hexdigest()}
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
            else "folder" for p in sorted(folder.rglob("*"))}


def _write_damaged_models(files: Path, model: Path) -> None:
    """Copies of a trained model folder, each with one file lost, edited or truncated."""
    def copy(name: str) -> Path:
        return Path(shutil.copytree(model, files / name))

    (copy("model_no_head") / "head.safetensors").unlink()
    (copy("model_no_config") / "config.yaml").unlink()
    (copy("model_no_class_names") / "class_names.json").unlink()
    info = copy("model_task_edited") / "model.json"
    info.write_text(info.read_text().replace('"task": "classification"', '"task": "semantic"'))
    adapter = copy("model_adapter_truncated") / "adapter" / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[:100])


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
    (files / "dup.yaml").write_text("task: classification\nlr: 1\nlr: 2\n")
    (files / "binary.yaml").write_bytes(bytes(range(256)) * 2)
    (files / "empty.yaml").write_text("")
    (files / "a_file").write_text("a file where a folder is expected\n")
    (files / "empty_names.txt").write_text("\n\n")
    (files / "full_folder").mkdir()
    (files / "full_folder" / "keep.txt").write_text("the user's own file\n")
    bad = files / "bad"
    bad.mkdir()
    (bad / "corrupt.png").write_bytes(b"not a png")
    (bad / "zero.png").write_bytes(b"")
    real = sorted((world / "imagefolder" / "val").rglob("*.png"))[0].read_bytes()
    (bad / "truncated.png").write_bytes(real[: len(real) // 2])
    (bad / "notes.txt").write_text("not an image\n")
    # manifests with absolute image paths, so they may live anywhere
    records = [json.loads(line) for line in (world / "manifest" / "train.jsonl").read_text().splitlines()]
    for rec in records:
        rec["image"] = str((world / "manifest" / rec["image"]).resolve())
    good = [json.dumps(rec) for rec in records[:2]]
    gone = json.dumps({**records[1], "image": str(world / "coco" / "train" / "gone.png")})
    shards = files / "shards"
    shards.mkdir()
    (shards / "malformed.jsonl").write_text("\n".join([*good, '{"caption": "a cat", ']) + "\n")
    (shards / "missing_image.jsonl").write_text("\n".join([good[0], gone]) + "\n")
    (shards / "no_image.jsonl").write_text('{"caption": "a cat"}\n')
    broken = files / "bad_manifest" / "train.jsonl"
    broken.parent.mkdir()
    broken.write_text("\n".join([good[0]] + ['{"caption": broken'] * 15) + "\n")
    unreadable = files / "unreadable_train_world"  # every train image corrupt: fails at the first step
    shutil.copytree(world / "imagefolder", unreadable)
    for image in (unreadable / "train").rglob("*.png"):
        image.write_bytes(b"not a png")


class _Evil:
    """A pickle that would run a command when unpickled without weights_only."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_gets_one_clear_message(outcomes, case):
    results, paths, before = outcomes
    fields = {"id": case.id, **paths}
    proc = results[case.id]
    err = proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert "weights_only=False" not in err
    lowered = err.lower()
    for needle in case.needles:
        needle = needle.format(**fields)
        assert needle.lower() in lowered, f"{needle!r} not in:\n{err[-3000:]}"
    for advice in case.not_in:
        assert advice.lower() not in lowered, f"{advice!r} does not apply here:\n{err[-3000:]}"
    message = [line for line in err.splitlines() if line.startswith("umgkit")]
    assert len(message) == 1, err[-3000:]
    for folder in case.untouched:
        folder = folder.format(**fields)
        assert _digest(Path(folder)) == before[folder], f"{folder} changed"
    for path in case.absent:
        assert not Path(path.format(**fields)).exists(), f"{path.format(**fields)} was left behind"


def test_shared_run_and_world_untouched(outcomes):
    _, paths, before = outcomes
    for name in ("run", "world"):
        assert _digest(paths[name]) == before[str(paths[name])], f"a case changed the shared {name}"


def test_export_over_own_model_keeps_it_byte_identical(outcomes):
    """The acceptance case: the model folder is untouched file by file (names and bytes)."""
    results, paths, before = outcomes
    model = paths["files"] / "export_run" / "model"
    assert results["export_into_own_model"].returncode == 2
    assert {k: v for k, v in before[str(model.parent)].items() if k.startswith("model/")} == {
        f"model/{k}": v for k, v in _digest(model).items()}


def test_corrected_command_runs_after_a_failed_start(outcomes):
    """A run that fails after writing its start files (config.yaml, model/ metadata, tb/) but before any
    checkpoint does not block the corrected command (no --overwrite needed)."""
    _, paths, _ = outcomes
    out = paths["runs"] / "failed_start"
    fields = {"id": "failed_start", **paths}
    failing = [a.format(**fields) for a in train(out=str(out), world="{files}/unreadable_train_world")]
    assert main(failing) == 2
    assert (out / "model" / "model.json").is_file() and not (out / "checkpoints").exists()
    assert main([a.format(**fields) for a in train(out=str(out))]) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000001"]
    assert '"complete": true' in (out / "model" / "model.json").read_text()


def test_debug_keeps_the_traceback(outcomes):
    _, paths, _ = outcomes
    run = str(paths["files"] / "export_run")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "umgkit.cli", "--debug", "export", run, "--out",
                           f"{run}/model"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "umgkit.errors.ModelError" in proc.stderr


@pytest.mark.parametrize("case_id", ["head_task_mismatch", "head_name"])
def test_a_config_error_writes_nothing(outcomes, case_id):
    """Stopped when the config is loaded: no run folder, no synthetic world, nothing built."""
    results, paths, _ = outcomes
    assert results[case_id].returncode == 2
    assert not (paths["runs"] / case_id).exists()


def test_every_case_is_distinct():
    assert len({c.id for c in CASES}) == len(CASES) >= 100
