"""A trained run is a model: `umgkit eval RUN` repeats the run's final metrics without the train split, and
the files `umgkit predict RUN` writes, scored by the reference tools, give the same figures.

One tiny run per demo config (a few steps on a small world); then every train split is moved away.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from umgkit.cli import main
from umgkit.data.synth import generate_world
from umgkit.tasks.run import evaluate_saved

pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo"
ROOTS = {"classification": "imagefolder", "retrieval": "coco", "semantic": "ade", "panoptic": "coco",
         "detection": "coco"}
TRAIN_PARTS = ("imagefolder/train", "coco/train", "coco/annotations/captions_train.json",
               "coco/annotations/instances_train.json", "coco/annotations/panoptic_train.json",
               "coco/annotations/panoptic_train", "ade/images/training", "ade/annotations/training")
# lower thresholds than the demo's, so a model trained for seconds still predicts segments and boxes
EXTRA = {"panoptic": ("train.max_steps=60", "train.lr=3e-3", "task_options.object_threshold=0.0",
                      "task_options.overlap_threshold=0.5"),
         "detection": ("task_options.print_summary=false",)}
HEADLINE = {"classification": "top1", "retrieval": "mean_recall", "semantic": "mIoU", "panoptic": "PQ",
            "detection": "box_AP"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``(world, {task: run folder})`` after training each demo config for 3 steps, train splits removed."""
    root = tmp_path_factory.mktemp("trained_runs")
    world = root / "world"
    generate_world(world, num=40, size=64, progress=False)  # 32 train + 8 val images
    out = {}
    for task, sub in ROOTS.items():
        run = root / task
        code = main(["train", str(DEMO / f"{task}.yaml"), f"output_dir={run}", "data.synthetic.out=",
                     f"data.root={world / sub}", "train.max_steps=12", "train.progress=false",
                     "data.batch_size=8", "data.eval_batch_size=4", "train.warmup_steps=1",
                     *EXTRA.get(task, ())])
        assert code == 0
        out[task] = run
    for part in TRAIN_PARTS:
        shutil.move(world / part, world / (part.replace("/", "_") + ".away"))
    return world, out


def _final_metrics(run: Path) -> dict[str, float]:
    return json.loads((run / "model" / "model.json").read_text())["metrics"]


@pytest.mark.parametrize("task", list(ROOTS))
def test_eval_repeats_the_runs_final_metrics_without_the_train_split(runs, task):
    _, folders = runs
    final = _final_metrics(folders[task])
    assert HEADLINE[task] in final
    _, metrics = evaluate_saved(folders[task])
    assert set(metrics) == set(final)
    for key, value in final.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


def test_eval_cli_prints_the_same_lines_for_a_run_its_model_folder_and_its_last_checkpoint(runs, capsys):
    _, folders = runs
    run = folders["semantic"]
    checkpoint = sorted((run / "checkpoints").iterdir())[-1]
    printed = []
    for source in (run, run / "model", checkpoint):
        assert main(["eval", str(source)]) == 0
        printed.append([ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(("mIoU", "aAcc"))])
    final = _final_metrics(run)
    expected = [f"mIoU: {final['mIoU']:.4f}", f"aAcc: {final['aAcc']:.4f}"]
    assert printed[0] == printed[1] == printed[2] == expected


def test_predicted_classification_labels_score_as_eval_and_equal_the_eval_paths_argmax(runs, tmp_path):
    import torch

    from umgkit.engine.evaluate import val_loader
    from umgkit.models import load_model
    from umgkit.tasks import build_task

    world, folders = runs
    run, val = folders["classification"], world / "imagefolder" / "val"
    assert main(["predict", str(run), str(val / "*" / "*.png"), "--out", str(tmp_path)]) == 0
    rows = [json.loads(ln) for ln in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == len(list(val.glob("*/*.png"))) == 8
    correct = [row["labels"][0] == Path(row["file"]).parent.name for row in rows]
    assert np.mean(correct) == pytest.approx(_final_metrics(run)["top1"], abs=1e-9)
    # image by image: the labels equal the argmax of the model on the eval loader's batches
    model = load_model(run)
    task = build_task(model.config, model=model, train=False)
    with torch.no_grad():
        argmax = [i for batch in val_loader(task, model.config)
                  for i in model(images=batch["image"]).argmax(1).tolist()]
    assert [row["label_ids"][0] for row in rows] == argmax
    assert len(set(argmax)) > 1  # not a constant prediction: the comparison can tell models apart


def test_predicted_semantic_pngs_score_as_eval(runs, tmp_path):
    world, folders = runs
    images = world / "ade" / "images" / "validation"
    assert main(["predict", str(folders["semantic"]), str(images), "--out", str(tmp_path)]) == 0
    names = json.loads((folders["semantic"] / "model" / "class_names.json").read_text())
    k = len(names)
    confusion = np.zeros((k, k), np.int64)
    for gt_file in sorted((world / "ade" / "annotations" / "validation").glob("*.png")):
        gt = np.asarray(Image.open(gt_file)).astype(np.int64) - 1  # reduce_zero_label: 0 -> ignore
        pred = np.asarray(Image.open(tmp_path / "labels" / gt_file.name)).astype(np.int64)
        keep = (gt >= 0) & (gt < k)
        confusion += np.bincount(gt[keep] * k + pred[keep], minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(float)
    with np.errstate(invalid="ignore"):
        iou = tp / (confusion.sum(0) + confusion.sum(1) - tp)
    final = _final_metrics(folders["semantic"])
    assert np.nanmean(iou) == pytest.approx(final["mIoU"], abs=1e-9)
    assert tp.sum() / confusion.sum() == pytest.approx(final["aAcc"], abs=1e-9)
    assert len(list((tmp_path / "overlays").glob("*.png"))) == len(list(images.glob("*.png")))


def test_predicted_panoptic_files_score_as_eval_and_equal_its_saved_predictions(runs, tmp_path):
    from umgkit.metrics.panoptic import pq_compute_files, read_panoptic_png

    world, folders = runs
    coco, run = world / "coco", folders["panoptic"]
    assert main(["predict", str(run), str(coco / "val"), "--out", str(tmp_path)]) == 0
    pq = pq_compute_files(coco / "annotations" / "panoptic_val.json", coco / "annotations" / "panoptic_val",
                          tmp_path / "panoptic.json", tmp_path / "panoptic", per_class=False)
    final = _final_metrics(run)
    for key in ("PQ", "SQ", "RQ", "PQ_th", "PQ_st"):
        assert pq[key] == pytest.approx(final[key], abs=1e-9, nan_ok=True), key
    # segment by segment: eval's own COCO panoptic output of the same images is identical
    evaluate_saved(run, ["task_options.save_predictions=true"])
    mine = {a["file_name"]: a for a in json.loads((tmp_path / "panoptic.json").read_text())["annotations"]}
    theirs = json.loads((run / "panoptic_predictions.json").read_text())["annotations"]
    assert len(theirs) == len(mine) == 8 and sum(len(a["segments_info"]) for a in theirs) > 0
    for ann in theirs:
        name = Path(ann["file_name"]).with_suffix(".png").name
        assert np.array_equal(read_panoptic_png(tmp_path / "panoptic" / name),
                              read_panoptic_png(run / "panoptic_predictions" / ann["file_name"]))
        assert [(s["id"], s["category_id"]) for s in mine[name]["segments_info"]] == \
            [(s["id"], s["category_id"]) for s in ann["segments_info"]]


def test_predicted_detection_json_scores_as_eval_and_equals_its_results_file(runs, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    world, folders = runs
    coco, run = world / "coco", folders["detection"]
    assert main(["predict", str(run), str(coco / "val"), "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "detections.json").read_text())
    _, metrics = evaluate_saved(run)  # writes run/eval/coco_instances_results.json
    theirs = json.loads((run / "eval" / "coco_instances_results.json").read_text())
    assert len(results) > 0
    assert [{k: v for k, v in r.items() if k != "label"} for r in results] == theirs
    gt = COCO(str(coco / "annotations" / "instances_val.json"))
    for iou_type, prefix in (("bbox", "box_"), ("segm", "mask_")):
        ev = COCOeval(gt, gt.loadRes(results), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        for index, name in ((0, "AP"), (1, "AP50"), (2, "AP75")):
            assert max(ev.stats[index], 0.0) == pytest.approx(metrics[f"{prefix}{name}"], abs=1e-9), name


def test_predicted_retrieval_rankings_follow_the_models_similarities(runs, tmp_path):
    import torch

    from umgkit.models import load_model

    world, folders = runs
    coco, run = world / "coco", folders["retrieval"]
    captions = json.loads((coco / "annotations" / "captions_val.json").read_text())
    files = {img["id"]: img["file_name"] for img in captions["images"]}
    first = {}
    for ann in captions["annotations"]:
        first.setdefault(ann["image_id"], ann["caption"])
    texts = [first[i] for i in sorted(first)]
    assert main(["predict", str(run), str(coco / "val"), "--out", str(tmp_path), "--texts", *texts]) == 0
    per_text = [json.loads(ln) for ln in (tmp_path / "text_to_image.jsonl").read_text().splitlines()]
    per_image = [json.loads(ln) for ln in (tmp_path / "image_to_text.jsonl").read_text().splitlines()]
    assert [r["text"] for r in per_text] == texts and len(per_image) == len(files) == 8
    # the rankings are the model's own cosine similarities, computed here without the predictor
    model = load_model(run)
    from umgkit.data import load_image

    tf = model.preprocess.transform()
    paths = sorted((coco / "val").glob("*.png"))
    with torch.no_grad():
        emb = model(images=torch.stack([tf({"image": load_image(p)})["image"] for p in paths]))["image"]
        sims = model(texts=texts)["text"] @ emb.t()  # (T, N)
    for row, expected in zip(per_text, sims.argsort(dim=1, descending=True, stable=True), strict=True):
        assert [Path(p).name for p in row["images"]] == [paths[j].name for j in expected.tolist()]
    for row, i in zip(per_image, range(len(paths)), strict=True):
        assert row["texts"][0] == texts[int(sims[:, i].argmax())]
