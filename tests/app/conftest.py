"""A semantic run of the demo config, trained for a few steps on a small synthetic world (module scope)."""

from pathlib import Path

import pytest

from umgkit.cli import main
from umgkit.data.synth import generate_world

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo"


@pytest.fixture(scope="session")
def semantic_run(tmp_path_factory):
    """``(run folder, [val images], class names)``."""
    root = tmp_path_factory.mktemp("serve")
    world = root / "world"
    generate_world(world, num=40, size=64, progress=False)
    run = root / "semantic"
    code = main(["train", str(DEMO / "semantic.yaml"), f"output_dir={run}", "data.synthetic.out=",
                 f"data.root={world / 'ade'}", "train.max_steps=12", "train.progress=false",
                 "data.batch_size=8", "train.warmup_steps=1"])
    assert code == 0
    images = sorted((world / "ade" / "images" / "validation").glob("*.png"))
    names = (world / "ade" / "classes.txt").read_text().split("\n")
    return run, images, [n for n in names if n]
