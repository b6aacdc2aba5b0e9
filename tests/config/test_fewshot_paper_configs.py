"""Every configs/paper/fewshot/<dataset>/<method>.yaml loads and says what the CoOp protocol says."""

from pathlib import Path

import pytest

from umgkit.config import load_config
from umgkit.data.prompts import DATASET_TEMPLATES
from umgkit.heads.classification import resolve_templates
from umgkit.registry import ADAPTERS, HEADS

ROOT = Path(__file__).resolve().parents[2] / "configs" / "paper" / "fewshot"
CLASSES = {"imagenet": 1000, "caltech101": 100, "oxford_pets": 37, "stanford_cars": 196, "flowers102": 102,
           "food101": 101, "fgvc_aircraft": 100, "sun397": 397, "dtd": 47, "eurosat": 10, "ucf101": 101}
METHODS = {  # method: (adapter, adapter options, head, head options)
    "zeroshot": ("frozen", {}, "clip", {}),
    "coop": ("coop", {"n_ctx": 16, "ctx_init": None}, "clip", {}),
    "cocoop": ("cocoop", {"n_ctx": 4, "ctx_init": "a photo of a"}, "clip", {}),
    "clip_adapter": ("frozen", {}, "clip_adapter", {"reduction": 4, "ratio": 0.2}),
    "tip_adapter": ("frozen", {}, "tip_adapter", {"alpha": 1.0, "beta": 5.5}),
    "tip_adapter_f": ("frozen", {}, "tip_adapter_f", {"alpha": 1.0, "beta": 5.5}),
    "clip_lora": ("clip_lora", {"rank": 2, "alpha": 1}, "clip", {}),
    "lp_pp": ("frozen", {}, "lp_pp", {}),
}
PAIRS = [(d, m) for d in sorted(CLASSES) for m in METHODS]


def test_every_dataset_and_method_has_its_file():
    found = sorted(p.relative_to(ROOT).with_suffix("").as_posix() for p in ROOT.glob("[!_]*/*.yaml"))
    assert found == sorted(f"{d}/{m}" for d, m in PAIRS) and len(found) == 88
    assert set(CLASSES) == set(DATASET_TEMPLATES)


@pytest.mark.parametrize("dataset, method", PAIRS, ids=[f"{d}-{m}" for d, m in PAIRS])
def test_paper_config_loads(dataset, method):
    cfg = load_config(ROOT / dataset / f"{method}.yaml")
    adapter, adapter_options, head, head_options = METHODS[method]
    m, d = cfg.model, cfg.data
    assert (cfg.task, m.backbone, m.pretrained, d.image_size) == ("classification", "openclip:ViT-B-16",
                                                                   "openai", 224)
    assert (m.adapter, m.head) == (adapter, head)
    assert m.adapter_options == adapter_options
    assert m.head_options == {**head_options, "templates": f"dataset:{dataset}"}
    assert [p("x") for p in resolve_templates(m.head_options["templates"])] == [
        DATASET_TEMPLATES[dataset].format("x")]
    assert (d.fewshot.shots, d.fewshot.seed, cfg.seed) == (16, None, 1)
    assert d.fewshot.classes == ("base" if method == "cocoop" else "all")
    assert d.num_classes == CLASSES[dataset] and cfg.output_dir == f"runs/fewshot/{dataset}/{method}"
    if dataset == "imagenet":
        assert (d.format, d.val_split) == ("imagefolder", "val")
    else:
        assert (d.format, d.val_split) == ("coop_split", "test")
        assert d.options["split_file"].endswith(".json")
    ADAPTERS.get(m.adapter)  # the method's options parse with its own schema
    HEADS.parse_options(m.head, m.head_options)


def test_training_lengths():
    assert load_config(ROOT / "oxford_pets" / "coop.yaml").train.epochs == 200
    assert load_config(ROOT / "imagenet" / "coop.yaml").train.epochs == 50
    lora = load_config(ROOT / "dtd" / "clip_lora.yaml").train
    assert (lora.max_steps, lora.lr) == (8000, 2.0e-4)
    cocoop = load_config(ROOT / "eurosat" / "cocoop.yaml")
    assert (cocoop.train.epochs, cocoop.data.batch_size) == (10, 1)
