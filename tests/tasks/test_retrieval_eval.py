"""RetrievalTask.evaluate packs captions per image correctly (variable counts, truncation to 5), in one
process and gathered over two (torchrun, gloo)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from umgkit.config import DataConfig
from umgkit.data.collate import collate_dicts
from umgkit.metrics.retrieval import retrieval_metrics
from umgkit.tasks.retrieval import OneCaptionPerImage, RetrievalTask, split_options


class _OneHotModel(nn.Module):
    """Image k -> e_k; caption "k" -> e_k, caption "k!" -> e_((k+1) % 4): a known similarity matrix."""

    def forward(self, images=None, texts=None):
        out = {"logit_scale": torch.tensor(0.0)}
        if images is not None:
            out["image"] = nn.functional.one_hot(images[:, 0, 0, 0].long(), 4).float()
        if texts is not None:
            ids = [(int(t.rstrip("!")) + t.endswith("!")) % 4 for t in texts]
            out["text"] = nn.functional.one_hot(torch.tensor(ids), 4).float()
        return out


class _Single:
    """The two Accelerator calls evaluate makes, for one process."""

    def pad_across_processes(self, x, dim=0):
        return x

    def gather_for_metrics(self, x):
        return x


def _items():
    caps = [["0", "0", "0!"], ["1!"], ["2"] * 7, ["3", "3!"]]  # image 2 has 7 captions: truncated to 5
    return [{"image": torch.full((3, 2, 2), float(k)), "captions": c, "image_id": k}
            for k, c in enumerate(caps)]


def test_evaluate_matches_direct_metrics_across_batches():
    items = _items()
    loader = [collate_dicts(items[:3]), collate_dicts(items[3:])]
    task = RetrievalTask(model=_OneHotModel(), train_dataset=[], val_dataset=items)
    got = task.evaluate(task.model, loader, _Single())

    owners = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2, 2, 3, 3])
    columns = [0, 0, 1, 2, 2, 2, 2, 2, 2, 3, 0]  # the one-hot each caption embeds to
    sim = torch.eye(4)[:, columns]
    assert got == retrieval_metrics(sim, owners)
    # images 0 and 2 tie with a wrong caption (ties count against them), image 1's caption points at
    # image 2: only image 3 is retrieved at rank 0
    assert got["i2t_R@1"] == 25.0


def test_one_caption_per_image_is_deterministic_and_seeded():
    data = [{"image": torch.zeros(1), "captions": [str(i) for i in range(5)], "image_id": k}
            for k in range(40)]
    a, b = OneCaptionPerImage(data_copy(data), seed=0), OneCaptionPerImage(data_copy(data), seed=0)
    picks = [a[i]["caption"] for i in range(40)]
    assert picks == [b[i]["caption"] for i in range(40)]
    assert len(set(picks)) > 1  # not always the first caption
    other = OneCaptionPerImage(data_copy(data), seed=1)
    assert picks != [other[i]["caption"] for i in range(40)]


def data_copy(data):
    return [dict(d, captions=list(d["captions"])) for d in data]


def test_split_placeholder_in_options():
    data = DataConfig(options={"annotations_file": "annotations/captions_{split}.json", "limit": 3})
    assert split_options(data, "val").options == {"annotations_file": "annotations/captions_val.json",
                                                  "limit": 3}


def test_two_process_evaluate_matches_single(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    here = Path(__file__).parent
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(here / "_dist_retrieval_eval.py")]
    path = os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")])  # the script imports this module
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.split("METRICS ", 1)[1].splitlines()[0])

    items = _items() + _items()[:1]
    task = RetrievalTask(model=_OneHotModel(), train_dataset=[], val_dataset=items)
    expected = task.evaluate(task.model, [collate_dicts(items)], _Single())
    assert got == expected
