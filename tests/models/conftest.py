"""A tiny trained semantic run (open-vocabulary head) and its world, shared by the model-folder tests."""

from pathlib import Path

import pytest

from umgkit.cli import main
from umgkit.data.synth import generate_world

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo"


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_world")
    generate_world(root, num=20, size=64, progress=False)  # 16 train + 4 val images
    return root


@pytest.fixture(scope="session")
def semantic_run(small_world, tmp_path_factory):
    """A semantic run with an open-vocabulary classifier, trained for 2 steps."""
    run = tmp_path_factory.mktemp("semantic_run") / "run"
    code = main(["train", str(DEMO / "semantic.yaml"), f"output_dir={run}", "data.synthetic.out=",
                 f"data.root={small_world / 'ade'}", "train.max_steps=2", "train.progress=false",
                 "data.batch_size=4", "model.head_options.classifier=open_vocab"])
    assert code == 0
    return run
