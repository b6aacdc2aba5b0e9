"""The few-shot protocol: K-shot sampler, base/novel split, the task's view of data.fewshot, CoOp prompts."""

from pathlib import Path

import pytest
from PIL import Image

from umgkit._builtins import import_builtins
from umgkit.config import ConfigError, DataConfig, FewShotConfig, ModelConfig, RunConfig, TrainConfig
from umgkit.data import DatasetError, build_imagefolder
from umgkit.data.fewshot import FewShotDataset, fewshot_splits, sample_shots, split_classes
from umgkit.data.prompts import DATASET_TEMPLATES
from umgkit.heads.classification import resolve_templates
from umgkit.metrics import harmonic_mean
from umgkit.tasks._feature_cache import cache_fingerprint

COUNTS = {"ant": 6, "bee": 5, "cat": 7, "dog": 5, "eel": 6}  # images per class in the train split


def write_folder(root: Path, counts: dict[str, int], split: str = "train") -> Path:
    for k, (name, count) in enumerate(sorted(counts.items())):
        (root / split / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("RGB", (8, 8), (30 * k, 10 * i, 0)).save(root / split / name / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("fewshot")
    write_folder(root, COUNTS, "train")
    return write_folder(root, {name: 2 for name in COUNTS}, "val")


LABELS = [c for c, n in enumerate(sorted(COUNTS.values())) for _ in range(n)]  # 5, 5, 6, 6, 7 per class


def test_exactly_k_per_class_sorted_and_deterministic():
    for k in (1, 2, 5):
        chosen = sample_shots(LABELS, k, seed=3)
        assert chosen == sorted(chosen) and len(set(chosen)) == 5 * k
        assert [sum(LABELS[i] == c for i in chosen) for c in range(5)] == [k] * 5
        assert sample_shots(list(LABELS), k, seed=3) == chosen


def test_seeds_differ_and_samples_are_nested():
    by_seed = [sample_shots(LABELS, 2, seed=s) for s in range(4)]
    assert len({tuple(s) for s in by_seed}) == 4  # four seeds, four different samples
    for seed in range(4):
        one, two, four = (set(sample_shots(LABELS, k, seed=seed)) for k in (1, 2, 4))
        assert one < two < four  # the 1-shot image is among the 2 shots, those among the 4 shots


def test_a_class_shots_do_not_depend_on_the_other_classes():
    all_classes = sample_shots(LABELS, 3, seed=1)
    base_only = sample_shots(LABELS, 3, seed=1, classes=[0, 1, 2])
    assert base_only == [i for i in all_classes if LABELS[i] < 3]


def test_too_few_images_names_the_class_and_count():
    with pytest.raises(DatasetError, match=r"'cat' \(label 2\): 6; 'dog' \(label 3\): 5"):
        sample_shots([0] * 8 + [1] * 7 + [2] * 6 + [3] * 5, 7, seed=0,
                     class_names=["ant", "bee", "cat", "dog"])
    with pytest.raises(DatasetError, match=r"'eel' \(label 1\): 0"):  # a class without any image
        sample_shots([0, 0], 1, seed=0, class_names=["ant", "eel"])


def test_base_and_novel_are_disjoint_and_cover_all():
    for count in (1, 2, 5, 10, 37, 100, 397):
        base, novel = split_classes(count, "base"), split_classes(count, "novel")
        assert len(base) == (count + 1) // 2  # ceil(C / 2), CoOp's subsample_classes
        assert not set(base) & set(novel)
        assert base + novel == split_classes(count, "all") == list(range(count))
    with pytest.raises(DatasetError, match="all, base, novel"):
        split_classes(4, "half")


def test_view_renumbers_kept_classes_and_names_follow(folder):
    train = build_imagefolder(folder, "train")
    view = FewShotDataset(train, range(len(train)), keep=split_classes(5, "novel"))
    assert view.class_names == ["dog", "eel"] and len(view) == 5 + 6
    items = [view[i] for i in range(len(view))]
    assert [it["label"] for it in items] == [0] * 5 + [1] * 6
    assert [Path(it["path"]).parent.name for it in items] == ["dog"] * 5 + ["eel"] * 6
    assert [r[1] for r in view.samples] == [0] * 5 + [1] * 6


def _run_cfg(root, out, *, shots=2, classes="all", seed=None, run_seed=0, adapter="frozen", head="linear",
             image_size=32):
    import_builtins()
    return RunConfig(
        task="classification", output_dir=str(out), seed=run_seed,
        model=ModelConfig(backbone="umg:tiny", adapter=adapter, head=head,
                          adapter_options={"rank": 4} if adapter == "lora" else {}),
        data=DataConfig(root=str(root), image_size=image_size, batch_size=4,
                        fewshot=FewShotConfig(shots=shots, seed=seed, classes=classes)),
        train=TrainConfig(epochs=1, progress=False), task_options={"cache_features": False})


def _paths(dataset) -> list[str]:
    return [str(r[0]) for r in dataset.samples]


def test_same_shots_for_every_method_at_one_seed(folder, tmp_path):
    from umgkit.tasks.build import build_task

    probe = build_task(_run_cfg(folder, tmp_path / "a", seed=7))
    lora = build_task(_run_cfg(folder, tmp_path / "b", seed=7, adapter="lora", head="text_init",
                               image_size=48))
    assert _paths(probe.train_dataset) == _paths(lora.train_dataset)
    assert len(probe.train_dataset) == 10 and len(probe.val_dataset) == 10  # val: every image, all classes
    # fewshot.seed null = the run's seed
    assert _paths(build_task(_run_cfg(folder, tmp_path / "c", run_seed=7)).train_dataset) == _paths(
        probe.train_dataset)
    other = build_task(_run_cfg(folder, tmp_path / "d", seed=8)).train_dataset
    assert _paths(other) != _paths(probe.train_dataset) and len(other) == 10


def test_task_applies_classes_to_train_and_val(folder, tmp_path):
    from umgkit.tasks.build import build_task

    task = build_task(_run_cfg(folder, tmp_path / "base", shots=4, classes="base"))
    assert task.model.class_names == task.class_names == ["ant", "bee", "cat"]
    assert task.train_dataset.class_names == task.val_dataset.class_names == ["ant", "bee", "cat"]
    assert sorted(r[1] for r in task.train_dataset.samples) == [0] * 4 + [1] * 4 + [2] * 4
    assert sorted(r[1] for r in task.val_dataset.samples) == [0, 0, 1, 1, 2, 2]
    train = build_imagefolder(folder, "train")
    all_shots = [str(train.samples[i][0]) for i in sample_shots([r[1] for r in train.samples], 4, seed=0)]
    base = ("ant", "bee", "cat")
    assert _paths(task.train_dataset) == [p for p in all_shots if Path(p).parent.name in base]


def test_fewshot_off_leaves_the_readers_alone(folder):
    train, val = build_imagefolder(folder, "train"), build_imagefolder(folder, "val")
    assert fewshot_splits(FewShotConfig(), 0, train, val) == (train, val)


def test_feature_cache_gives_a_subset_its_own_entry(folder):
    def digest(dataset):
        return cache_fingerprint(backbone="umg:tiny", pretrained=None, transform=None, dataset=dataset)[0]

    def train(shots, seed, classes="all"):
        return fewshot_splits(FewShotConfig(shots=shots, seed=seed, classes=classes), 0,
                              build_imagefolder(folder, "train"), None)[0]

    keys = {digest(build_imagefolder(folder, "train")), digest(train(2, 0)), digest(train(2, 1)),
            digest(train(4, 0)), digest(train(2, 0, "base")), digest(train(None, 0, "novel"))}
    assert len(keys) == 6
    assert digest(train(2, 0)) == digest(train(2, 0))  # the same subset hits the same entry


def test_harmonic_mean_values():
    assert harmonic_mean(80.0, 70.0) == pytest.approx(74.6666667, abs=1e-6)
    assert harmonic_mean(80.47, 71.69) == pytest.approx(75.83, abs=5e-3)  # CoCoOp's 11-dataset average
    assert harmonic_mean(60.0, 60.0) == 60.0 and harmonic_mean(100.0, 0.0) == 0.0
    assert harmonic_mean(0.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        harmonic_mean(-1.0, 50.0)


def test_dataset_prompt_templates():
    assert len(DATASET_TEMPLATES) == 11
    prompts = {name: resolve_templates(f"dataset:{name}")[0]("x") for name in DATASET_TEMPLATES}
    assert prompts["oxford_pets"] == "a photo of a x, a type of pet."
    assert prompts["dtd"] == "x texture." and prompts["eurosat"] == "a centered satellite photo of x."
    assert prompts["food101"] == "a photo of x, a type of food."
    assert prompts["imagenet"] == prompts["sun397"] == "a photo of a x."
    with pytest.raises(ConfigError, match="known datasets: caltech101, dtd, eurosat"):
        resolve_templates("dataset:pets")
