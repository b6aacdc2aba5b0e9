"""A tiny synthetic world shared by the pretrain tests (generated once per session)."""

import pytest

from umgkit.data.synth import generate_world


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    world = tmp_path_factory.mktemp("pretrain_world") / "world"
    generate_world(world, num=40, size=32, seed=0, progress=False)
    return world


def tiny_config(world, out, **train) -> str:
    """YAML of a few-step pretraining run on ``world`` writing to ``out``."""
    steps = train.get("max_steps", 4)
    return (
        "task: pretrain\n"
        f"output_dir: {out}\n"
        "model: {backbone: 'umg:tiny'}\n"
        f"data: {{root: {world / 'manifest'}, image_size: 32, batch_size: 8}}\n"
        f"train: {{max_steps: {steps}, lr: 0.001, clip_grad: 1.0, log_every: 1, progress: false, "
        f"save_every: {train.get('save_every', 0)}}}\n"
        "task_options:\n"
        "  zeroshot:\n"
        f"    classification: {{format: imagefolder, root: {world / 'imagefolder'}, split: val}}\n"
        f"    regions: {{format: coco_instances, root: {world / 'coco'}, split: val,\n"
        "              options: {image_dir: val, annotations_file: annotations/instances_val.json}}\n"
        f"    segmentation: {{format: ade20k, root: {world / 'ade'}, split: val}}\n"
        "  zeroshot_templates: ['a {}']\n")
