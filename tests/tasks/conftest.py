"""The small world the dense-task tests (semantic, panoptic, detection) read, generated once per session.

Those tests only read it (runs write under their own ``tmp_path``); test files that need another world
size define their own ``world`` fixture, which takes precedence.
"""

import pytest

from umgkit.data.synth import generate_world


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("dense_world")
    generate_world(root, num=10, size=64, progress=False)  # 8 train + 2 val images
    return root
